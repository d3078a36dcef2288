"""One training run from a :class:`RunConfig`: resolve data and model, train, write ``RUN/``.

``RUN/`` receives ``config.json`` (the resolved configuration), ``history.jsonl`` (one record per
evaluation), ``model/`` (the best model, see :mod:`bertfit.inference`, with the temperature
fitted on the dev set, see :mod:`bertfit.train.calibrate`, and last its model card
``README.md``, see :mod:`bertfit.model_card`), ``calibration.json``, ``results.json`` (the
best record, the calibration and the number of train and dev examples), ``steps.jsonl`` and
``checkpoints/step-N/`` (see :mod:`bertfit.train.checkpoint`). Every file is written
atomically, so an interrupted run leaves complete files only, and :func:`resume_run` continues
it from its latest checkpoint. Under ``torchrun`` every process runs :func:`train_run` and only
rank 0 writes and prints.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bertfit.config import read_json, write_json
from bertfit.data.readers import TextExamples, read_glue_split
from bertfit.data.sources import resolve_task_dir
from bertfit.data.tasks import TaskSpec, get_task
from bertfit.data.user_files import build_user_task
from bertfit.data.user_stream import (
    FileExamples,
    read_user_examples,
    scan_label_ids,
    scan_task,
    scan_user_file,
)
from bertfit.errors import BertfitError, ConfigError
from bertfit.inference import ClassifierInfo, TextClassifier
from bertfit.model.classifier import BertClassifier
from bertfit.model.presets import resolve_model_dir
from bertfit.model.sources import describe_source
from bertfit.model.weights import load_pretrained
from bertfit.model_card import write_model_card
from bertfit.paths import MODEL_CARD_FILE, find_model_dir
from bertfit.precision import resolve_device, resolve_precision
from bertfit.problem import REGRESSION, TASK_TYPES, task_type_of
from bertfit.text.tokenizer import WordpieceTokenizer
from bertfit.train import distributed
from bertfit.train.calibrate import (
    Calibration,
    calibrate_trained,
    fit_calibration,
    record_calibration,
)
from bertfit.train.callbacks import EarlyStopping, EvaluationCallback
from bertfit.train.checkpoint import STATE_FILE, checkpoints_dir, latest_checkpoint, step_of
from bertfit.train.class_weights import class_weight_vector
from bertfit.train.config import RunConfig
from bertfit.train.distillation import (
    build_student_classifier,
    learns_from_teacher,
    training_loss,
    with_teacher_targets,
)
from bertfit.train.evaluate import (
    decisions_of,
    encode_examples,
    logits_of_encoded,
    score_logits,
)
from bertfit.train.memory import limit_kernel_caches
from bertfit.train.metrics import dev_metrics, metric_prefix
from bertfit.train.phases import TIMINGS_FILE, PhaseTimer, process_age
from bertfit.train.report import classification_report
from bertfit.train.trainer import Trainer, TrainResult


def build_classifier(config: RunConfig, task: TaskSpec) -> TextClassifier:
    """The pretrained encoder of ``config.model`` with a fresh head for ``task``, and its
    tokenizer; the head's initial weights depend on ``config.trainer.seed`` only.

    A distilled run's model is instead the student cut from its teacher
    (:func:`bertfit.train.distillation.build_student_classifier`).
    """
    if config.distill.teacher is not None:
        return build_student_classifier(config, task)
    model_dir = resolve_model_dir(config.model)
    # Any format: PyTorch weights, a TensorFlow checkpoint (directory or prefix), a SavedModel.
    source = describe_source(model_dir)
    encoder_config = source.config
    if config.max_seq_length > encoder_config.max_position_embeddings:
        raise ConfigError(
            f"max_seq_length {config.max_seq_length} exceeds the model's "
            f"{encoder_config.max_position_embeddings} positions"
        )
    torch.manual_seed(config.trainer.seed)
    model = BertClassifier(
        encoder_config, num_classes=task.num_classes, problem_type=task.problem_type
    )
    # Only the encoder is restored: a classifier directory's own head (possibly for other
    # labels) is ignored and the new head starts fresh, as fine-tuning expects.
    load_pretrained(model.encoder, model_dir, strict=True)
    reinit_top_layers(model, config.reinit_layers)
    lower_case = source.lower_case
    tokenizer = WordpieceTokenizer(source.vocab, lower_case=lower_case)
    info = ClassifierInfo(
        task=config.task,
        problem_type=task.problem_type,
        label_names=list(task.label_names),
        max_seq_length=config.max_seq_length,
        lower_case=lower_case,
        input_names=list(task.input_names),
        window_stride=config.window_stride,
        truncator=config.truncator,
    )
    return TextClassifier(model, tokenizer, info)


def reinit_top_layers(model: BertClassifier, count: int) -> None:
    """Re-initialize the top ``count`` encoder layers and the pooler (``reinit_layers``).

    Called after the pretrained weights are loaded, so the draws follow the head's from the
    generator ``build_classifier`` seeded: the same seed gives the same weights, and the head
    is the same with or without re-initialized layers. A resumed run builds its model this way
    too, then takes every weight from its checkpoint.
    """
    layers = model.config.num_layers
    if count > layers:
        raise ConfigError(f"reinit_layers: {count} is more than the model's {layers} layers")
    model.encoder.reinit_top_layers(count)


def load_task_data(
    config: RunConfig, download: bool = True
) -> tuple[TaskSpec, TextExamples | FileExamples, dict[str, TextExamples | FileExamples]]:
    """The run's task, training examples and dev sets (split name -> examples).

    Resolves ``config`` in place as ``RUN/config.json`` records it: the task's canonical name
    and absolute data paths, the main metric (``trainer.main_metric``, checked against the
    task's metrics), and for the user's own files the task type and label names.
    The user's own files are checked and their labels read, but their texts stay on disk
    until encoded (:class:`~bertfit.data.user_stream.FileExamples`), whatever their size.
    """
    config.validate()
    if config.data.train_file is not None:
        return _load_user_data(config)
    task = get_task(config.task)
    config.task = task.name
    config.trainer.main_metric = config.trainer.main_metric_of(task)  # checked, and recorded
    task_dir = resolve_task_dir(task, config.data_dir, "train", download=download)
    config.data_dir = str(task_dir.resolve())
    train = read_glue_split(task_dir / "train.tsv", task, "train")
    dev = {
        split: read_glue_split(task_dir / task.split_file(split), task, split)
        for split in task.dev_splits
    }
    return task, train, dev


def _load_user_data(config: RunConfig) -> tuple[TaskSpec, FileExamples, dict[str, FileExamples]]:
    data = config.data
    columns = data.columns()
    train_scan = scan_user_file(data.train_file, columns)
    asked = TASK_TYPES.get(data.task_type)  # None for "auto": inferred from the labels
    task, how = scan_task(train_scan, columns, asked, data.label_names)
    if data.task_type == "auto":
        print(f"task type: {how}", file=sys.stderr)
    config.task = task.name
    config.trainer.main_metric = config.trainer.main_metric_of(task)  # checked, and recorded
    data.train_file = str(Path(data.train_file).resolve())
    data.task_type = task_type_of(task.problem_type)
    data.label_names = None if task.problem_type == REGRESSION else list(task.label_names)
    if data.label_columns is not None:
        data.label_names = None  # the columns name them
    dev = {}
    if data.dev_file is not None:
        data.dev_file = str(Path(data.dev_file).resolve())
        dev["dev"] = read_user_examples(data.dev_file, columns, task, "dev")
    train_labels = scan_label_ids(train_scan, task, "train")
    return task, FileExamples(Path(data.train_file), columns, train_labels, train_scan.source), dev


def resolve_run_config(config: RunConfig, download: bool = False) -> RunConfig:
    """Fill in what a run derives, exactly as ``bertfit train`` writes it to ``RUN/config.json``.

    The task's canonical name, its data directory and the model directory as absolute paths,
    ``optimizer.total_steps`` from the number of training examples (the file is read,
    not tokenized), and the precision ``auto`` takes on this machine. ``config`` is changed in
    place and returned.
    """
    _task, train, _dev = load_task_data(config, download=download)
    config.model = str(resolve_model_dir(config.model).resolve())
    config.optimizer.total_steps = config.trainer.planned_steps(len(train))
    device = resolve_device(config.trainer.device)
    config.trainer.precision = resolve_precision(config.trainer.precision, device)
    config.optimizer.validate()
    return config


def task_of(config: RunConfig) -> TaskSpec:
    """The task of a resolved run config (a GLUE task, or the user's own files)."""
    data = config.data
    if data.train_file is None:
        return get_task(config.task)
    columns = data.columns()
    names = data.label_columns or data.label_names or ()
    return build_user_task(columns, TASK_TYPES[data.task_type], names)


def read_split(
    config: RunConfig, task: TaskSpec, split: str, data_dir=None
) -> TextExamples | FileExamples:
    """Labelled (or, for test splits, unlabelled) examples of one split of a resolved run."""
    data = config.data
    if data.train_file is None:
        task_dir = resolve_task_dir(task, data_dir or config.data_dir, split)
        return read_glue_split(task_dir / task.split_file(split), task, split)
    files = {"train": data.train_file, "dev": data.dev_file}
    if files.get(split) is None:
        raise ConfigError(f"this run has no {split} file (its splits: train, dev when given)")
    return read_user_examples(files[split], data.columns(), task, split)


@dataclass
class SplitScores:
    """The metrics of one evaluated split and how many examples they cover."""

    split: str
    examples: int
    metrics: dict[str, float]
    # The per-class report (bertfit.train.report), when asked for.
    report: dict | None = None


@dataclass
class RunEvaluation:
    """What :func:`evaluate_run` measured: each split's scores and all of them in one mapping.

    ``metrics`` holds the plain metric names for one split, and for several (MNLI's matched
    and mismatched dev files) names that carry the file: ``matched_accuracy``.
    """

    task: str
    splits: list[SplitScores] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    temperature: float | None = None  # the model's (1 when it has none); None for regression


def load_run_model(run: str | Path) -> tuple[TextClassifier, RunConfig, TaskSpec]:
    """The best model of a run (or a saved model directory), the run's config and its task.

    A bare model directory has no ``config.json``: its config knows only the task.
    """
    model_dir = find_model_dir(run)
    classifier = TextClassifier.from_pretrained(model_dir)
    run_file = model_dir.parent / "config.json"
    if run_file.is_file():
        config = RunConfig.from_json_file(run_file)
    else:
        config = RunConfig(task=classifier.info.task, data_dir=None)
    return classifier, config, task_of(config)


def evaluate_run(
    run: str | Path,
    split: str = "dev",
    data_dir: str | Path | None = None,
    batch_size: int = 64,
    report: bool = False,
) -> RunEvaluation:
    """The metrics of a run's best model (or of a saved model directory) on a labelled split.

    Classification tasks also get their calibration: ``ece`` (15 bins) and ``nll`` before
    (``_before``) and after (``_after``) the model's temperature. ``report`` adds each split's
    per-class report (:func:`bertfit.train.report.classification_report`; needs scikit-learn).

    ``split`` "dev" means every dev file of the task; otherwise a split name such as
    ``train`` or ``dev_mismatched``. The data is the run's own (``RUN/config.json``) unless
    ``data_dir`` names another GLUE directory; a bare model directory knows only its task.
    """
    classifier, config, task = load_run_model(run)
    if report and task.problem_type == REGRESSION:
        raise ConfigError(f"--report needs classes; {task.name} is a regression")
    splits = task.dev_splits if split == "dev" else (split,)
    result = RunEvaluation(task.name)
    if task.problem_type != REGRESSION:
        result.temperature = classifier.temperature
    for name in splits:
        examples = read_split(config, task, name, data_dir)
        if examples.labels is None:
            raise ConfigError(f"split {name!r} has no labels to evaluate against; use predict")
        data = encode_examples(classifier, task, examples)
        logits = logits_of_encoded(classifier, data, batch_size)
        scores = score_logits(classifier, task, logits, data.labels, calibration=True)
        table = None
        if report:
            table = classification_report(
                decisions_of(classifier, task, logits),
                data.labels,
                task.label_names,
                task.problem_type,
            )
        result.splits.append(SplitScores(name, len(examples), scores, table))
        if len(splits) == 1:
            result.metrics.update(scores)
        else:  # named after the file, as a run's records name them, less the "dev_"
            named = {metric_prefix(name) + metric: value for metric, value in scores.items()}
            result.metrics.update(dev_metrics(named))
    return result


def calibrate_run(
    run: str | Path, data_dir: str | Path | None = None, batch_size: int = 64
) -> Calibration:
    """Fit and record the temperature of a finished run (``bertfit calibrate RUN``); see
    :mod:`bertfit.train.calibrate`.

    The dev data is the run's own (``RUN/config.json``) unless ``data_dir`` names another
    GLUE directory. Raises :class:`ConfigError` for a regression task or a split without labels.
    """
    classifier, config, task = load_run_model(run)
    if task.problem_type == REGRESSION:
        raise ConfigError(
            f"{task.name} is a regression task: it has no class probabilities to calibrate"
        )
    dev = {}
    for split in task.dev_splits:
        examples = read_split(config, task, split, data_dir)
        if examples.labels is None:
            raise ConfigError(f"split {split!r} has no labels to calibrate on")
        dev[split] = encode_examples(classifier, task, examples)
    calibration = fit_calibration(classifier, dev, batch_size)
    record_calibration(find_model_dir(run), calibration)
    write_model_card(run)  # it states the temperature
    return calibration


def train_run(
    config: RunConfig,
    output: str | Path,
    progress: bool | None = None,
    resume: str | Path | None = None,
    phases: PhaseTimer | None = None,
    resume_if_exists: bool = False,
    callbacks: Sequence[EvaluationCallback] = (),
) -> TrainResult | None:
    """Train as ``config`` says and write the run directory ``output``.

    ``resume`` is a checkpoint of this run (``output/checkpoints/step-N``) to continue from;
    :func:`resume_run` finds the latest one. ``phases`` collects where the time goes (the
    caller may have timed its start-up into it); it is written to ``output/timings.json``.

    ``resume_if_exists``: when ``output`` already holds this run with a checkpoint, continue
    it from its latest one (as :func:`resume_run`; None if it had finished), else start it.
    This is what a job that is started again with the same command needs (``torchrun
    --max-restarts``, a scheduler requeueing a preempted job). A run of another config in
    ``output`` is refused with :class:`ConfigError`.

    ``callbacks``: per-evaluation callbacks (:mod:`bertfit.train.callbacks`) beside those the
    config asks for, such as a hyperparameter search's pruning (``bertfit tune``).
    """
    if resume_if_exists:
        if resume is not None or callbacks:
            raise ConfigError("resume_if_exists goes without resume and callbacks")
        return _train_or_resume(config, Path(output), progress, phases)
    phases = phases if phases is not None else PhaseTimer()
    limit_kernel_caches()  # before anything here runs a matrix product (a teacher's, say)
    # The process group first (a no-op for one process): the step count depends on its size.
    context = distributed.init_from_env(resolve_device(config.trainer.device))
    with phases.phase("reading data"):
        task, train_examples, dev_examples = load_task_data(config)
    # Checked before the model is built: a weight naming an unknown label is a user's mistake.
    class_weights = class_weight_vector(config.trainer.class_weights, task, train_examples.labels)
    callbacks = [*_callbacks(config, task, dev_examples), *callbacks]
    with phases.phase("building model"):
        classifier = build_classifier(config, task)
    config.model = str(resolve_model_dir(config.model).resolve())  # repeatable from any cwd
    output = Path(output)
    trainer = Trainer(
        classifier,
        task,
        config.trainer,
        config.optimizer,
        output,
        progress,
        config.logging,
        phases=phases,
        loss_function=training_loss(config, task, classifier, class_weights),
        callbacks=callbacks,
    )
    with phases.phase("tokenizing"):
        train_data = trainer.encode(train_examples)
        dev_data = {split: trainer.encode(examples) for split, examples in dev_examples.items()}
    if learns_from_teacher(config):
        with phases.phase("teacher outputs"):
            train_data = with_teacher_targets(
                config, train_data, trainer.device, trainer.precision, trainer.progress
            )
    config.optimizer.total_steps = trainer.plan_steps(len(train_data))
    config.trainer.precision = trainer.precision  # what "auto" became on this device
    if context.is_main:
        output.mkdir(parents=True, exist_ok=True)
        if resume is None:  # a resumed run keeps the config it started with
            write_json(output / "config.json", config.to_dict())
        processes = f" on {context.world_size} processes" if context.enabled else ""
        print(
            f"training {task.name}: {len(train_data)} train / "
            f"{sum(len(d) for d in dev_data.values())} dev examples, "
            f"{config.optimizer.total_steps} steps of "
            f"{config.trainer.global_batch_size(context.world_size)} examples{processes}, "
            f"{trainer.device.type} {trainer.precision}, model {config.model}"
        )
        if class_weights is not None:
            weights = ", ".join(f"{n} {w:.4g}" for n, w in zip(task.label_names, class_weights))
            print(f"class weights ({_describe_setting(config.trainer.class_weights)}): {weights}")
        if config.distill.teacher is not None:
            print(describe_distillation(config))
        if resume is not None:
            print(f"resuming from step {step_of(Path(resume))} ({resume})")
    result = trainer.fit(train_data, dev_data, resume=resume)
    if context.is_main:
        # Texts in the files (not windows, not augmented copies): what the model card reports.
        examples = {"train": len(train_examples)}
        examples.update({split: len(data) for split, data in dev_examples.items()})
        results = {"best": result.best, "steps": result.steps, "examples": examples}
        if result.stopped is not None:
            results["stopped_early"] = result.stopped
            print(describe_stop(result.stopped))
        with phases.phase("calibration"):
            calibration = calibrate_trained(output, task, dev_data, result.best_logits)
        if calibration is not None:
            results["calibration"] = calibration.to_dict()
            print(describe_calibration(calibration))
        write_json(output / "results.json", results)
        write_model_card(output)  # last: it reports the final results and temperature
        write_json(output / TIMINGS_FILE, phases.to_dict(process_age()))
        print(f"time: {phases.summary()}")
    return result


def _describe_setting(setting) -> str:
    return setting if isinstance(setting, str) else "as given"


def _callbacks(config: RunConfig, task: TaskSpec, dev: dict) -> list[EvaluationCallback]:
    """The trainer's per-evaluation callbacks that the config asks for: early stopping."""
    trainer = config.trainer
    if trainer.early_stopping_patience is None:
        return []
    if not dev:
        raise ConfigError(
            "trainer.early_stopping_patience needs a dev set to watch (--dev or data.dev_file)"
        )
    # What picks the best model (the trainer's BestModel): trainer.main_metric, or the task's.
    key = metric_prefix(next(iter(dev))) + trainer.main_metric_of(task)
    return [EarlyStopping(key, trainer.early_stopping_patience, trainer.early_stopping_delta)]


def describe_stop(stopped: dict) -> str:
    """The console's line about a run that a callback ended early."""
    return (
        f"stopped early at step {stopped['step']} (epoch {stopped['epoch']}): {stopped['reason']}"
    )


def _train_or_resume(
    config: RunConfig, output: Path, progress: bool | None, phases: PhaseTimer | None
) -> TrainResult | None:
    """``train_run(..., resume_if_exists=True)``: see there."""
    context = distributed.init_from_env(resolve_device(config.trainer.device))
    # Process 0 looks and every process follows its answer: one that looked later could find
    # the files another had just begun to write for a fresh start.
    decision = None
    if context.is_main:
        try:
            decision = _existing_run(config, output)
        except BertfitError as error:  # every process fails the same way, none waits
            decision = ("error", str(error))
    action, detail = distributed.broadcast_object(decision)
    if action == "error":
        raise ConfigError(detail)
    if action == "resume":
        return resume_run(output, progress, phases)
    if detail and context.is_main:
        print(detail)
    return train_run(config, output, progress, phases=phases)


def _existing_run(config: RunConfig, output: Path) -> tuple[str, str | None]:
    """What ``output`` asks of a run of ``config``: ("start", note), ("resume", None) or
    ("error", why)."""
    if not (output / "config.json").is_file():
        return "start", None
    saved_config = RunConfig.from_json_file(output / "config.json")
    # A run from before trainer.main_metric was recorded used its task's first metric.
    saved_config.trainer.main_metric = saved_config.trainer.main_metric_of(task_of(saved_config))
    saved = saved_config.to_dict()
    wanted = resolve_run_config(RunConfig.from_dict(config.to_dict())).to_dict()
    # The step count also depends on the process count and on windows; a checkpoint checks it
    # against this run's (with the data and the process count) when it is loaded.
    saved["optimizer"].pop("total_steps", None)
    wanted["optimizer"].pop("total_steps", None)
    difference = _first_difference(saved, wanted)
    if difference is not None:
        key, there, here = difference
        return "error", (
            f"{output} holds a run of another config ({key} is {there!r} there, {here!r} "
            "here); give another run directory, or remove this one"
        )
    if latest_checkpoint(checkpoints_dir(output), warn=lambda message: None) is not None:
        return "resume", None
    return "start", f"{output}: no complete checkpoint yet; starting the run again"


def _first_difference(saved: dict, wanted: dict, prefix: str = ""):
    """The first dotted key whose value differs, with both values; None when they agree."""
    for key in sorted(saved.keys() | wanted.keys()):
        there, here = saved.get(key), wanted.get(key)
        if isinstance(there, dict) and isinstance(here, dict):
            found = _first_difference(there, here, f"{prefix}{key}.")
            if found is not None:
                return found
        elif there != here:
            return f"{prefix}{key}", there, here
    return None


def describe_distillation(config: RunConfig) -> str:
    """One line about a distilled run, for the console."""
    distill = config.distill
    line = (
        f"distilling {distill.teacher}: student of its layers {distill.layers} "
        f"({distill.init}), temperature {distill.temperature}, alpha {distill.alpha}"
    )
    if distill.augment:
        line += (
            f", {distill.augment} augmented copies of each input "
            f"({distill.augment_rate:g} of words replaced)"
        )
    if distill.layer_weight:
        line += f", [CLS] vectors matched with weight {distill.layer_weight:g}"
    if distill.token_weight:
        line += (
            f", every token's vectors matched with weight {distill.token_weight:g} "
            "(the teacher runs on each batch)"
        )
    return line


def describe_calibration(calibration: Calibration) -> str:
    """One line about a temperature fit, for the console."""
    before, after = calibration.before, calibration.after
    line = (
        f"calibrated: temperature {calibration.temperature:.4f} on {calibration.examples} dev "
        f"examples; ece {before['ece']:.4f} -> {after['ece']:.4f}, "
        f"nll {before['nll']:.4f} -> {after['nll']:.4f}"
    )
    if calibration.thresholds is not None:
        cuts = ", ".join(f"{name} {value:.3f}" for name, value in calibration.thresholds.items())
        at_half, fitted = calibration.decisions["at_0.5"], calibration.decisions["fitted"]
        line += (
            f"\nthresholds fitted on dev: {cuts}; micro F1 {at_half['micro_f1']:.4f} -> "
            f"{fitted['micro_f1']:.4f}, macro F1 {at_half['macro_f1']:.4f} -> "
            f"{fitted['macro_f1']:.4f} (at 0.5 -> fitted)"
        )
    return line


def resume_run(
    run_dir: str | Path, progress: bool | None = None, phases: PhaseTimer | None = None
) -> TrainResult | None:
    """Continue the run in ``run_dir`` from its latest complete checkpoint, with its own
    ``config.json``; None (and a message) when the run had already finished.

    A damaged newest checkpoint (its checksums do not match) is skipped with a warning.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise ConfigError(f"{run_dir}: not a run directory (no config.json) to resume")
    config = RunConfig.from_json_file(run_dir / "config.json")
    context = distributed.init_from_env(resolve_device(config.trainer.device))
    quiet = None if context.is_main else (lambda message: None)
    checkpoint = latest_checkpoint(checkpoints_dir(run_dir), warn=quiet)
    if checkpoint is None:
        raise ConfigError(
            f"{run_dir}: no complete checkpoint to resume from (checkpoints are written at "
            "the end of each epoch and every --checkpoint-every steps)"
        )
    state = read_json(checkpoint / STATE_FILE)
    if not state["finished"]:
        return train_run(config, run_dir, progress, resume=checkpoint, phases=phases)
    if context.is_main:
        stopped = state.get("stopped")
        if not (run_dir / "results.json").is_file():  # it stopped between the two writes
            results = {"best": state["best"], "steps": state["step"]}
            if stopped:
                results["stopped_early"] = stopped
            write_json(run_dir / "results.json", results)
        if not (find_model_dir(run_dir) / MODEL_CARD_FILE).is_file():  # or before the card
            write_model_card(run_dir)
        how = f"; {describe_stop(stopped)}" if stopped else ""
        print(
            f"{run_dir}: the run already finished ({state['step']} steps{how}); nothing to resume"
        )
    return None


def train_seeds(
    config: RunConfig, output: str | Path, seeds: list[int], progress: bool | None = None
) -> dict:
    """One run per seed in ``output/seed-N/`` and a summary of their best dev metrics.

    The summary (also written to ``output/summary.json``) holds each seed's best record and,
    per metric, the mean and the sample standard deviation over seeds.
    """
    output = Path(output)
    per_seed: dict[str, dict] = {}
    for seed in seeds:
        seed_config = RunConfig.from_dict(config.to_dict())
        seed_config.trainer.seed = seed
        print(f"seed {seed}:")
        result = train_run(seed_config, output / f"seed-{seed}", progress)
        per_seed[str(seed)] = result.best or {}
    summary = {"seeds": seeds, "runs": per_seed, "metrics": summarize_metrics(per_seed.values())}
    write_json(output / "summary.json", summary)
    return summary


def summarize_metrics(records) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation of every numeric ``dev`` metric over ``records``."""
    records = list(records)
    keys = [k for k, v in records[0].items() if k.startswith("dev") and _is_number(v)]
    summary = {}
    for key in keys:
        values = np.array([record[key] for record in records], dtype=np.float64)
        std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        summary[key] = {"mean": float(values.mean()), "std": std, "n": len(values)}
    return summary


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
