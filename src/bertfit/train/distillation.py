"""What a distilled run adds to an ordinary one: the student cut from the teacher, the teacher's
outputs on the training inputs, and the loss that learns from them.

A run whose config has ``distill.teacher`` set (:class:`~bertfit.train.config.DistillConfig`,
written by ``bertfit distill``, see :mod:`bertfit.train.student_run`) is trained by
:func:`bertfit.train.run.train_run` like any other: only its model
(:func:`build_student_classifier`), its training data (:func:`with_teacher_targets`) and its
loss (:func:`training_loss`) differ, so it resumes, evaluates, calibrates, exports and serves
as every run does.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

import bertfit
from bertfit.data.tasks import TaskSpec
from bertfit.errors import ConfigError
from bertfit.inference import TextClassifier, predicted_batches
from bertfit.model.student import build_student
from bertfit.model.taps import FirstTokenTap, TeacherShadow
from bertfit.paths import find_model_dir
from bertfit.problem import REGRESSION, task_type_of
from bertfit.train.augment import augment_inputs
from bertfit.train.config import RunConfig
from bertfit.train.evaluate import EncodedExamples
from bertfit.train.losses import NO_LABEL_CLASS, DistillationLoss


def load_teacher(config: RunConfig) -> TextClassifier:
    """The best model of the run's teacher (``distill.teacher``)."""
    return TextClassifier.from_pretrained(find_model_dir(config.distill.teacher))


def build_student_classifier(config: RunConfig, task: TaskSpec) -> TextClassifier:
    """The student of a distilled run: the teacher's classifier with only its layers
    ``distill.layers``, with the teacher's tokenizer and text settings, its ``bertfit.json``
    saying how it was distilled. Its temperature is fitted anew after training."""
    teacher = load_teacher(config)
    if teacher.problem_type != task.problem_type:
        raise ConfigError(
            f"teacher {config.distill.teacher} is a {task_type_of(teacher.problem_type)} model "
            f"but task {task.name} is a {task_type_of(task.problem_type)}"
        )
    if teacher.model.num_classes != task.num_classes:
        raise ConfigError(
            f"teacher {config.distill.teacher} has {teacher.model.num_classes} outputs but task "
            f"{task.name} has {task.num_classes}"
        )
    model = build_student(teacher.model, config.distill.layers)
    info = dataclasses.replace(
        teacher.info,
        bertfit_version=bertfit.__version__,
        temperature=None,
        distilled_from=distillation_record(config, teacher.model.config.num_layers),
    )
    return TextClassifier(model, teacher.tokenizer, info)


def distillation_record(config: RunConfig, teacher_layers: int) -> dict:
    """What a distilled model's ``bertfit.json`` says about where it came from."""
    distill = config.distill
    return {
        "teacher": distill.teacher,
        "teacher_layers": teacher_layers,
        "layers": list(distill.layers),
        "init": distill.init,
        "temperature": distill.temperature,
        "alpha": distill.alpha,
        "augment": distill.augment,
        "augment_rate": distill.augment_rate,
        "layer_weight": distill.layer_weight,
        "token_weight": distill.token_weight,
        "seed": config.trainer.seed,
    }


def teacher_outputs(
    teacher: TextClassifier,
    data: EncodedExamples,
    device: torch.device,
    precision: str,
    batch_size: int = 64,
    progress: bool | None = None,
    layers: list[int] | None = None,
) -> np.ndarray:
    """The teacher's logits (scores for regression) of every training input, one row per
    input (a windowed text's windows each their own), in eval mode (no dropout); with
    ``layers``, each row goes on with the first-token vectors of those teacher layers, in
    order: [N, C + len(layers) * H].

    Computed once before training: the inputs do not change between epochs, so this costs one
    evaluation pass of the teacher rather than a teacher forward pass per step.
    """
    model = teacher.model.to(device)
    width = model.num_classes + len(layers or ()) * model.config.hidden_size
    rows = np.zeros((len(data.inputs), width), dtype=np.float32)
    with FirstTokenTap(model.encoder, layers or ()) as tap:
        batches = predicted_batches(
            model, data.inputs, batch_size, progress, precision, desc="teacher"
        )
        for batch, logits in batches:
            outputs = [logits, tap.stacked().flatten(1)] if layers else [logits]
            rows[batch] = torch.cat([o.float() for o in outputs], dim=1).cpu().numpy()
    return rows


def with_teacher_targets(
    config: RunConfig,
    data: EncodedExamples,
    device: torch.device,
    precision: str,
    progress: bool | None = None,
) -> EncodedExamples:
    """``data`` carrying the teacher's outputs (:func:`teacher_outputs`) as its
    ``soft_targets``, after ``distill.augment`` augmented copies of its inputs when the run
    asks for them; with ``distill.layer_weight``, the first-token vectors of the teacher
    layers ``distill.layers`` too."""
    teacher = load_teacher(config)
    distill = config.distill
    if distill.augment:
        data = with_augmented_copies(data, teacher, config)
    batch_size = config.trainer.eval_batch_size
    layers = list(distill.layers) if distill.layer_weight else None
    targets = teacher_outputs(teacher, data, device, precision, batch_size, progress, layers)
    return dataclasses.replace(data, soft_targets=targets)


def with_augmented_copies(
    data: EncodedExamples, teacher: TextClassifier, config: RunConfig
) -> EncodedExamples:
    """``data`` followed by ``distill.augment`` copies of its inputs with words swapped for
    neighbours in the teacher's word embeddings (:func:`bertfit.train.augment.augment_inputs`,
    drawn from the run's seed). The copies have no gold label (a NaN score, or the class id
    :data:`~bertfit.train.losses.NO_LABEL_CLASS`), so they learn from the teacher alone."""
    distill = config.distill
    inputs = augment_inputs(
        data.inputs,
        distill.augment,
        distill.augment_rate,
        teacher.model.encoder.embeddings.word_embeddings.weight,
        teacher.tokenizer.vocabulary,
        seed=config.trainer.seed,
    )
    added = len(inputs) - len(data.inputs)
    missing = np.nan if teacher.problem_type == REGRESSION else NO_LABEL_CLASS
    no_label = np.full(added, missing, dtype=data.labels.dtype)
    labels = np.concatenate([data.labels, no_label])
    owners = None  # each copy is a text of its own, with its own (missing) label
    if data.owners is not None:
        owners = np.concatenate([data.owners, len(data.labels) + np.arange(added)])
    return EncodedExamples(inputs, labels, owners)


def learns_from_teacher(config: RunConfig) -> bool:
    """Whether the run trains on the teacher's outputs: it is distilled with ``alpha`` < 1.

    At ``alpha`` 1 the loss is the task's alone, so the teacher's outputs are not computed.
    """
    return config.distill.teacher is not None and config.distill.alpha < 1


def training_loss(
    config: RunConfig,
    task: TaskSpec,
    student: TextClassifier,
    class_weights: np.ndarray | None = None,
) -> DistillationLoss | None:
    """The trainer's loss hook for this run: None (the task's own loss, which the trainer
    weighs itself) unless it learns from a teacher's outputs; ``class_weights`` weigh its
    gold-label term. With ``distill.layer_weight``, it taps every layer of ``student``'s
    encoder for the layer-matching term; with ``distill.token_weight``, it loads the teacher
    to run beside the student on every training batch (:class:`TeacherShadow`)."""
    if not learns_from_teacher(config):
        return None
    distill = config.distill
    tap = shadow = None
    if distill.layer_weight:
        encoder = student.model.encoder
        tap = FirstTokenTap(encoder, range(len(encoder.layers)))
    if distill.token_weight:
        shadow = TeacherShadow(student.model, load_teacher(config).model, distill.layers)
    return DistillationLoss(
        distill.temperature,
        distill.alpha,
        task.problem_type,
        distill.layer_weight,
        tap,
        distill.token_weight,
        shadow,
        None if class_weights is None else torch.from_numpy(class_weights),
    )
