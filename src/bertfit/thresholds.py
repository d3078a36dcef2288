"""Decision thresholds of a multi-label model: one per label, fitted on dev to maximize its F1.

A multi-label model chooses each label whose probability reaches the label's threshold. Until
thresholds are fitted every label uses 0.5; after training, :func:`fit_thresholds` picks for
each label the cut of its dev probabilities with the highest F1 (a rare label usually gets a
lower one). The cut lies halfway between two neighbouring probabilities, so it does not sit on
any dev example. numpy only.
"""

from __future__ import annotations

import numpy as np

#: The threshold of every label before fitting, and of a label with no positive dev example.
DEFAULT_THRESHOLD = 0.5


def best_threshold(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The threshold that maximizes the F1 of one label's 0/1 ``labels`` when the label is
    chosen for ``probabilities`` at or above it; :data:`DEFAULT_THRESHOLD` when the label has
    no positive example (its F1 is 0 at any threshold). Ties keep the highest threshold."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    positives = int(labels.sum())
    if positives == 0:
        return DEFAULT_THRESHOLD
    order = np.argsort(-probabilities, kind="stable")
    ranked, hits = probabilities[order], labels[order]
    # Choosing the top k examples: tp = hits among them, F1 = 2 tp / (k + positives). Only cuts
    # between two different probabilities (or after the last one) can be made by a threshold.
    k = np.arange(1, len(ranked) + 1)
    f1 = 2.0 * np.cumsum(hits) / (k + positives)
    cuttable = np.append(ranked[1:] < ranked[:-1], True)
    f1 = np.where(cuttable, f1, -1.0)
    best = int(np.argmax(f1))  # the first maximum: fewest labels chosen, highest threshold
    below = ranked[best + 1] if best + 1 < len(ranked) else 0.0
    # Kept inside (0, 1), where a stored threshold must be, should probabilities reach 0 or 1.
    return float(np.clip((ranked[best] + below) / 2.0, 1e-7, 1 - 1e-7))


def fit_thresholds(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """One threshold per label (:func:`best_threshold` of each column of
    ``probabilities`` and 0/1 ``labels``, both [n, labels])."""
    probabilities, labels = np.asarray(probabilities), np.asarray(labels)
    if probabilities.ndim != 2 or probabilities.shape != labels.shape:
        raise ValueError(
            f"expected probabilities and labels of one shape [n, labels], got "
            f"{probabilities.shape} and {labels.shape}"
        )
    return np.array([best_threshold(p, y) for p, y in zip(probabilities.T, labels.T)])
