"""Fine-tuned classifiers as Hugging Face ``BertForSequenceClassification`` directories.

:func:`save_pretrained` writes ``config.json`` (the encoder's config in Hugging Face's keys,
plus ``num_labels``, ``id2label``, ``label2id``, ``problem_type`` and ``classifier_dropout``)
and ``model.safetensors`` in Hugging Face's names, so ``transformers`` loads the directory as
it loads its own; :func:`load_classifier` reads such a directory back (bertfit's or
transformers'), and :func:`classifier_from_pretrained` builds a fresh classifier on a pretrained
encoder. Tensors are renamed and checked by :mod:`bertfit.model.weights`.

``problem_type`` is the classifier's own (:mod:`bertfit.problem`, whose values are Hugging
Face's names); a ``config.json`` that leaves it unset is read as
:func:`~bertfit.problem.legacy_problem_type` says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from bertfit.config import atomic_path, read_json, write_json
from bertfit.errors import CheckpointError, ConfigError
from bertfit.model.classifier import BertClassifier
from bertfit.model.config import EncoderConfig
from bertfit.model.weights import LoadReport, load_pretrained, to_hf_state_dict
from bertfit.problem import SINGLE_LABEL, ProblemType, stored_problem_type


def classifier_from_pretrained(
    model_dir: str | Path,
    num_classes: int,
    *,
    dropout_rate: float | None = None,
    strict: bool = True,
    problem_type: ProblemType = SINGLE_LABEL,
) -> tuple[BertClassifier, LoadReport]:
    """A fresh classifier on the pretrained encoder of ``model_dir``, and the load report."""
    config = EncoderConfig.from_model_dir(model_dir)
    model = BertClassifier(config, num_classes, dropout_rate, problem_type)
    return model, load_pretrained(model, model_dir, strict=strict)


def save_pretrained(
    model: BertClassifier,
    directory: str | Path,
    *,
    id2label: Mapping[int, str] | Sequence[str] | None = None,
    extra_config: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``config.json`` and ``model.safetensors`` as Hugging Face's BERT classifier does.

    ``id2label`` names the classes (``LABEL_i`` when left out); ``extra_config`` adds keys to
    ``config.json`` (such as ``finetuning_task``) and must not override the ones written here.
    Each file is written to a temporary name and renamed. The caller adds ``vocab.txt``.
    Returns the directory.
    """
    directory = Path(directory)
    config = _hf_classifier_config(model, id2label, extra_config, directory / "config.json")
    tensors = {
        name: tensor.detach().to("cpu").clone(memory_format=torch.contiguous_format)
        for name, tensor in to_hf_state_dict(model.state_dict()).items()
    }
    directory.mkdir(parents=True, exist_ok=True)
    _atomic_save_file(tensors, directory / "model.safetensors")
    write_json(directory / "config.json", config)
    return directory


def load_classifier(directory: str | Path) -> BertClassifier:
    """Load a classifier saved by :func:`save_pretrained` (or by transformers), in eval mode.

    Needs ``config.json`` with the number of labels and a weight file holding the head.
    """
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{config_path}: no such file")
    data = read_json(config_path)
    encoder_config = EncoderConfig.from_dict(data, source=str(config_path))
    dropout = data.get("classifier_dropout")
    if dropout is not None and (isinstance(dropout, bool) or not isinstance(dropout, (int, float))):
        raise ConfigError(f"{config_path}.classifier_dropout: expected a number, got {dropout!r}")
    num_labels = _num_labels(data, str(config_path))
    problem_type = stored_problem_type(data.get("problem_type"), num_labels, str(config_path))
    model = BertClassifier(encoder_config, num_labels, dropout, problem_type)
    report = load_pretrained(model, directory, strict=True)
    if report.initialized:
        raise CheckpointError(
            f"{report.source}: holds no classification head ({', '.join(report.initialized)});"
            " it is an encoder checkpoint, not a fine-tuned classifier"
        )
    return model.eval()


def _num_labels(data: Mapping[str, Any], source: str) -> int:
    id2label, num_labels = data.get("id2label"), data.get("num_labels")
    if num_labels is not None and (
        isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1
    ):
        raise ConfigError(f"{source}.num_labels: expected a positive integer, got {num_labels!r}")
    if isinstance(id2label, Mapping) and id2label:
        if num_labels is not None and num_labels != len(id2label):
            raise ConfigError(
                f"{source}: num_labels {num_labels} disagrees with {len(id2label)} id2label entries"
            )
        return len(id2label)
    if num_labels is None:
        raise ConfigError(f"{source}: needs num_labels or id2label to build a classifier")
    return num_labels


def _hf_classifier_config(
    model: BertClassifier,
    id2label: Mapping[int, str] | Sequence[str] | None,
    extra_config: Mapping[str, Any] | None,
    path: Path,
) -> dict[str, Any]:
    labels = _label_names(id2label, model.num_classes)
    config = model.config.to_hf_dict()
    config.update(
        architectures=["BertForSequenceClassification"],
        num_labels=model.num_classes,
        id2label={str(i): label for i, label in enumerate(labels)},
        label2id={label: i for i, label in enumerate(labels)},
        problem_type=model.problem_type,
        classifier_dropout=model.dropout_rate,
    )
    for key, value in (extra_config or {}).items():
        if key in config:
            raise ConfigError(f"extra_config: {key!r} is written by save_pretrained itself")
        config[key] = value
    # What is written must load again: refuse keys our own reader would reject.
    EncoderConfig.from_dict(config, source=f"{path} (with extra_config)")
    return config


def _label_names(id2label: Mapping[int, str] | Sequence[str] | None, num_classes: int) -> list[str]:
    if id2label is None:
        return [f"LABEL_{i}" for i in range(num_classes)]
    if isinstance(id2label, Mapping):
        if sorted(id2label) != list(range(num_classes)):
            raise ConfigError(
                f"id2label: keys must be 0..{num_classes - 1} for {num_classes} classes, "
                f"got {sorted(id2label)}"
            )
        labels = [id2label[i] for i in range(num_classes)]
    else:
        labels = list(id2label)
        if len(labels) != num_classes:
            raise ConfigError(f"id2label: {len(labels)} names for {num_classes} classes")
    if len(set(labels)) != len(labels) or not all(isinstance(x, str) for x in labels):
        raise ConfigError(f"id2label: label names must be distinct strings, got {labels}")
    return labels


def _atomic_save_file(tensors: Mapping[str, torch.Tensor], path: Path) -> None:
    """safetensors ``save_file`` to a temporary name in ``path``'s directory, then rename."""
    with atomic_path(path) as tmp:
        save_file(dict(tensors), tmp, metadata={"format": "pt"})
