"""Class weights for skewed data: ``trainer.class_weights`` turned into one weight per label.

The setting is ``None`` (no weights, the default), ``"balanced"``, or a mapping from label
name to weight (labels it leaves out weigh 1). A run's ``config.json`` records it as given; the
numbers are computed again from the whole training set whenever the run trains, so every
process of a ``torchrun`` job and a resumed run get the same ones.

- Single-label classification: the weight of each class in the cross-entropy.
  ``"balanced"`` is ``n_examples / (n_classes * count(class))``, as scikit-learn's
  ``compute_class_weight("balanced", ...)``.
- Multi-label: each label's positive weight in the binary cross-entropy (``pos_weight``).
  ``"balanced"`` is ``count(without the label) / count(with it)``, which weighs a label's
  positives as much as its negatives.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from bertfit.data.tasks import TaskSpec
from bertfit.errors import ConfigError
from bertfit.problem import MULTI_LABEL, REGRESSION

BALANCED = "balanced"
KEY = "trainer.class_weights"


def check_class_weights(setting: object) -> None:
    """Refuse a setting that is not None, ``"balanced"`` or a mapping of positive numbers."""
    if setting is None or setting == BALANCED:
        return
    if not isinstance(setting, Mapping):
        raise ConfigError(f"{KEY}: expected 'balanced' or a mapping of label names to weights")
    for name, weight in setting.items():
        if not isinstance(name, str):  # YAML reads a bare yes, no, on or off as true or false
            raise ConfigError(
                f"{KEY}: label names must be text, got {name!r} (quote names such as 'yes')"
            )
        number = isinstance(weight, (int, float)) and not isinstance(weight, bool)
        if not number or not (math.isfinite(weight) and weight > 0):
            raise ConfigError(f"{KEY}.{name}: expected a positive number, got {weight!r}")


def class_weight_vector(setting: object, task: TaskSpec, labels) -> np.ndarray | None:
    """One float32 weight per label of ``task`` (None without weights), from the whole
    training set's ``labels`` (class ids [n], or a multi-label 0/1 matrix [n, labels]).

    Raises :class:`ConfigError` naming the key for a regression task, a weight naming a label
    the task does not have, or ``"balanced"`` with a label absent from the training set.
    """
    check_class_weights(setting)
    if setting is None:
        return None
    if task.problem_type == REGRESSION:
        raise ConfigError(f"{KEY}: {task.name} is a regression; it has no classes to weight")
    names = list(task.label_names)
    if setting == BALANCED:
        return _balanced(task, np.asarray(labels), names)
    unknown = [name for name in setting if name not in names]
    if unknown:
        raise ConfigError(
            f"{KEY}: unknown label {unknown[0]!r} (the labels are: {', '.join(names)})"
        )
    return np.array([float(setting.get(name, 1.0)) for name in names], dtype=np.float32)


def _balanced(task: TaskSpec, labels: np.ndarray, names: list[str]) -> np.ndarray:
    if task.problem_type == MULTI_LABEL:
        positives = labels.reshape(len(labels), len(names)).sum(axis=0).astype(np.float64)
        counts, weights = positives, (len(labels) - positives) / np.maximum(positives, 1)
    else:
        counts = np.bincount(labels.astype(np.int64), minlength=len(names)).astype(np.float64)
        weights = len(labels) / (len(names) * np.maximum(counts, 1))
    absent = np.flatnonzero(counts == 0)
    if len(absent):
        raise ConfigError(
            f"{KEY}: balanced weights need every label in the training set; "
            f"{names[absent[0]]!r} has no example"
        )
    return weights.astype(np.float32)
