"""Logits to probabilities, with numpy alone: the torch-free runtime and the server use it.

A calibrated model divides its logits by one temperature before the softmax
(:mod:`bertfit.temperature` fits it); a windowed model averages the logits of a text's windows
first. A model trained before calibration has no temperature: it uses 1, and says so once.
"""

from __future__ import annotations

import sys
import weakref

import numpy as np

from bertfit.errors import CheckpointError


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``softmax(logits / temperature)`` along the last axis."""
    scaled = np.asarray(logits) / temperature
    shifted = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``1 / (1 + exp(-logits / temperature))``, element by element (multi-label
    probabilities), computed without overflow for logits of either sign."""
    scaled = np.asarray(logits) / temperature
    small = np.exp(-np.abs(scaled))  # never overflows: its exponent is 0 or less
    return np.where(scaled >= 0, 1.0 / (1.0 + small), small / (1.0 + small)).astype(scaled.dtype)


def chosen_labels(
    logits: np.ndarray, temperature: float = 1.0, thresholds: np.ndarray | None = None
) -> np.ndarray:
    """Which labels of a multi-label model each row has: ``sigmoid(logits / temperature)``
    at or above each label's threshold (0.5 where ``thresholds`` is None); bool [n, labels]."""
    cut = 0.5 if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    return sigmoid(np.asarray(logits, dtype=np.float64), temperature) >= cut


def check_thresholds(value, count: int, where: str) -> None:
    """Refuse stored thresholds that are not ``None`` or ``count`` numbers in (0, 1)."""
    if value is None:
        return
    if not isinstance(value, list) or len(value) != count:
        raise CheckpointError(f"{where} must be a list of {count} numbers (one per label)")
    for item in value:
        number = isinstance(item, (int, float)) and not isinstance(item, bool)
        if not number or not 0 < item < 1:
            raise CheckpointError(f"{where} must hold numbers in (0, 1), got {item!r}")


def mean_by_owner(logits: np.ndarray, owners: np.ndarray | None, count: int) -> np.ndarray:
    """Average the logits of each text's windows (``owners[i]``: the text of row ``i``)."""
    if owners is None:
        return logits
    sums = np.zeros((count, logits.shape[1]), dtype=np.float64)
    np.add.at(sums, owners, logits)
    return (sums / np.bincount(owners, minlength=count)[:, None]).astype(np.float32)


def check_temperature(value, where: str) -> None:
    """Refuse a stored temperature that is not ``None`` or a positive finite number."""
    if value is None:
        return
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not np.isfinite(value) or value <= 0:
        raise CheckpointError(f"{where} must be a positive number or null, got {value!r}")


_NOTED: weakref.WeakSet = weakref.WeakSet()  # the models already noted


def note_uncalibrated(where: str, model: object) -> None:
    """Say once per loaded model that it has no fitted temperature, so its probabilities use 1."""
    if model in _NOTED:
        return
    _NOTED.add(model)
    print(
        f"note: {where} has no fitted temperature (trained before calibration); its "
        "probabilities use temperature 1. `bertfit calibrate RUN` fits one on the dev set "
        "(then re-export).",
        file=sys.stderr,
    )
