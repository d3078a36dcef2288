"""One training run from a :class:`RunConfig`: resolve data and model, train, write ``RUN/``.

``RUN/`` receives ``config.json`` (the resolved configuration), ``history.jsonl`` (one record per
evaluation), ``model/`` (the best model, see :mod:`bertfit.inference`) and ``results.json``
(the best record). Every file is written atomically, so an interrupted run leaves complete
files only.
"""

from __future__ import annotations

from pathlib import Path

import torch

from bertfit.config import write_json
from bertfit.data.readers import read_glue_split
from bertfit.data.sources import resolve_task_dir
from bertfit.data.tasks import TaskSpec, get_task
from bertfit.errors import ConfigError
from bertfit.inference import ClassifierInfo, TextClassifier
from bertfit.model.classifier import BertClassifier
from bertfit.model.config import EncoderConfig
from bertfit.model.presets import read_lower_case, resolve_model_dir
from bertfit.model.weights import load_pretrained
from bertfit.text.tokenizer import WordpieceTokenizer
from bertfit.train.config import RunConfig
from bertfit.train.trainer import Trainer, TrainResult


def build_classifier(config: RunConfig, task: TaskSpec) -> TextClassifier:
    """The pretrained encoder of ``config.model`` with a fresh head for ``task``, and its
    tokenizer; the head's initial weights depend on ``config.trainer.seed`` only."""
    model_dir = resolve_model_dir(config.model)
    encoder_config = EncoderConfig.from_model_dir(model_dir)
    if config.max_seq_length > encoder_config.max_position_embeddings:
        raise ConfigError(
            f"max_seq_length {config.max_seq_length} exceeds the model's "
            f"{encoder_config.max_position_embeddings} positions"
        )
    torch.manual_seed(config.trainer.seed)
    model = BertClassifier(encoder_config, num_classes=task.num_classes)
    # Only the encoder is restored: a classifier directory's own head (possibly for other
    # labels) is ignored and the new head starts fresh, as fine-tuning expects.
    load_pretrained(model.encoder, model_dir, strict=True)
    lower_case = read_lower_case(model_dir)
    tokenizer = WordpieceTokenizer(model_dir / "vocab.txt", lower_case=lower_case)
    info = ClassifierInfo(
        task=config.task,
        label_names=list(task.label_names),
        max_seq_length=config.max_seq_length,
        lower_case=lower_case,
        input_names=list(task.input_names),
    )
    return TextClassifier(model, tokenizer, info)


def train_run(config: RunConfig, output: str | Path, progress: bool | None = None) -> TrainResult:
    """Train as ``config`` says and write the run directory ``output``."""
    config.validate()
    task = get_task(config.task)
    config.task = task.name
    task_dir = resolve_task_dir(task, config.data_dir, "train")
    config.data_dir = str(task_dir.resolve())
    train_examples = read_glue_split(task_dir / "train.tsv", task, "train")
    dev_examples = {
        split: read_glue_split(task_dir / task.split_file(split), task, split)
        for split in task.dev_splits
    }
    classifier = build_classifier(config, task)
    config.model = str(resolve_model_dir(config.model))
    output = Path(output)
    trainer = Trainer(classifier, task, config.trainer, config.optimizer, output, progress)
    train_data = trainer.encode(train_examples)
    dev_data = {split: trainer.encode(examples) for split, examples in dev_examples.items()}
    config.optimizer.total_steps = trainer.plan_steps(len(train_data))
    output.mkdir(parents=True, exist_ok=True)
    write_json(output / "config.json", config.to_dict())
    print(
        f"training {task.name}: {len(train_data)} train / "
        f"{sum(len(d) for d in dev_data.values())} dev examples, "
        f"{config.optimizer.total_steps} steps, model {config.model}"
    )
    result = trainer.fit(train_data, dev_data)
    write_json(output / "results.json", {"best": result.best, "steps": result.steps})
    return result
