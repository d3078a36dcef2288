"""Logits to probabilities, with numpy alone: the torch-free runtime and the server use it.

A calibrated model divides its logits by one temperature before the softmax
(:mod:`bertfit.calibration` fits it); a windowed model averages the logits of a text's windows
first.
"""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``softmax(logits / temperature)`` along the last axis."""
    scaled = np.asarray(logits) / temperature
    shifted = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def mean_by_owner(logits: np.ndarray, owners: np.ndarray | None, count: int) -> np.ndarray:
    """Average the logits of each text's windows (``owners[i]``: the text of row ``i``)."""
    if owners is None:
        return logits
    sums = np.zeros((count, logits.shape[1]), dtype=np.float64)
    np.add.at(sums, owners, logits)
    return (sums / np.bincount(owners, minlength=count)[:, None]).astype(np.float32)
