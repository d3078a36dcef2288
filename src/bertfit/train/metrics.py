"""GLUE metrics on plain arrays: accuracy, F1, Matthews correlation, Pearson and Spearman, and
the multi-label ones (micro and macro F1, subset accuracy).

numpy only (no torch, no scikit-learn), so evaluating predictions stays light. Every metric
returns a plain Python float, and higher is better for all of them.

Undefined cases return 0.0 rather than NaN (F1 with no positive label or prediction, MCC or a
correlation of a constant input), as scikit-learn does for F1 and MCC: an early model that
predicts one class or one value scores 0, and best-model selection never compares against NaN.
Inputs that contain NaN or infinity give NaN for the correlations.

A run's records name each dev split's metrics with :func:`metric_prefix` (``dev_accuracy``, or
``dev_matched_accuracy`` for MNLI's two dev files); :func:`dev_metrics` gives them the short
names that ``bertfit train`` and ``bertfit evaluate`` print.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from bertfit.errors import ConfigError
from bertfit.problem import MULTI_LABEL, REGRESSION, ProblemType

DEV_PREFIX = "dev_"


def metric_prefix(split: str) -> str:
    """Prefix of a dev split's metrics in records: ``dev_`` or ``dev_matched_`` (MNLI)."""
    return f"{split}_"


def dev_metrics(record: Mapping[str, object]) -> dict[str, object]:
    """A record's dev metrics under their short names: ``dev_accuracy`` -> ``accuracy``,
    ``dev_matched_accuracy`` -> ``matched_accuracy``; other keys are left out."""
    return {
        key.removeprefix(DEV_PREFIX): value
        for key, value in record.items()
        if key.startswith(DEV_PREFIX)
    }


def _pair(pred, labels) -> tuple[np.ndarray, np.ndarray]:
    """Both inputs as 1-D arrays of the same, non-zero length."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    if pred.ndim != 1 or labels.ndim != 1:
        raise ValueError(
            f"expected 1-D predictions and labels, got shapes {pred.shape} and {labels.shape}"
        )
    if len(pred) != len(labels):
        raise ValueError(f"{len(pred)} predictions for {len(labels)} labels")
    if len(pred) == 0:
        raise ValueError("no predictions to score")
    return pred, labels


def accuracy(pred, labels) -> float:
    """Fraction of predictions equal to their label."""
    pred, labels = _pair(pred, labels)
    return float(np.mean(pred == labels))


def f1_score(pred, labels, positive=1) -> float:
    """F1 of the ``positive`` class: the harmonic mean of its precision and recall.

    Computed as ``2 tp / (2 tp + fp + fn)``. When that is undefined (no positive label and no
    positive prediction) it is 0.0, as scikit-learn's ``zero_division`` default gives.
    """
    pred, labels = _pair(pred, labels)
    predicted, actual = pred == positive, labels == positive
    true_pos = int(np.sum(predicted & actual))
    denominator = int(np.sum(predicted)) + int(np.sum(actual))
    return 2.0 * true_pos / denominator if denominator else 0.0


def matthews_corrcoef(pred, labels) -> float:
    """Matthews correlation coefficient, for two or more classes (Gorodkin's R_K).

    0.0 when undefined, e.g. when every label or every prediction is the same class.
    """
    pred, labels = _pair(pred, labels)
    classes, codes = np.unique(np.concatenate([labels, pred]), return_inverse=True)
    n, k = len(labels), len(classes)
    confusion = np.zeros((k, k), dtype=np.float64)
    np.add.at(confusion, (codes[:n], codes[n:]), 1.0)
    true_counts, pred_counts = confusion.sum(axis=1), confusion.sum(axis=0)
    correct, total = np.trace(confusion), float(n)
    covariance = correct * total - pred_counts @ true_counts
    variance_pred = total * total - pred_counts @ pred_counts
    variance_true = total * total - true_counts @ true_counts
    if variance_pred == 0 or variance_true == 0:
        return 0.0
    return float(covariance / np.sqrt(variance_pred * variance_true))


def _numeric_pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = _pair(x, y)
    return x.astype(np.float64), y.astype(np.float64)


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return float("nan")
    dx, dy = x - x.mean(), y - y.mean()
    scale = np.sqrt(np.dot(dx, dx) * np.dot(dy, dy))
    if scale == 0:
        return 0.0
    # Rounding can push a perfect correlation a hair past 1.
    return float(np.clip(np.dot(dx, dy) / scale, -1.0, 1.0))


def pearson(x, y) -> float:
    """Pearson correlation coefficient; 0.0 when either input is constant."""
    return _pearson(*_numeric_pair(x, y))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks where tied values share the mean of the ranks they span."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts_group = np.concatenate([[True], ordered[1:] != ordered[:-1]])
    group = np.cumsum(starts_group) - 1
    starts = np.flatnonzero(starts_group)
    ends = np.append(starts[1:], len(values))
    # Positions start..end-1 hold ranks start+1..end, whose mean is (start + 1 + end) / 2.
    mean_rank = (starts + 1 + ends) / 2.0
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = mean_rank[group]
    return ranks


def spearman(x, y) -> float:
    """Spearman rank correlation: Pearson of the average ranks (ties share their mean rank)."""
    x, y = _numeric_pair(x, y)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return float("nan")
    return _pearson(_average_ranks(x), _average_ranks(y))


def _label_rows(pred, labels) -> tuple[np.ndarray, np.ndarray]:
    """Both inputs as boolean [n, labels] arrays of the same shape (multi-label rows)."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    if pred.ndim != 2 or pred.shape != labels.shape:
        raise ValueError(
            f"expected 0/1 rows [n, labels] of one shape, got {pred.shape} and {labels.shape}"
        )
    if len(pred) == 0:
        raise ValueError("no predictions to score")
    return pred.astype(bool), labels.astype(bool)


def micro_f1(pred, labels) -> float:
    """Multi-label F1 over every (example, label) decision pooled: ``2 tp / (2 tp + fp + fn)``
    counted over all labels; 0.0 when no label is present or predicted."""
    pred, labels = _label_rows(pred, labels)
    true_pos = int(np.sum(pred & labels))
    denominator = int(np.sum(pred)) + int(np.sum(labels))
    return 2.0 * true_pos / denominator if denominator else 0.0


def per_label_f1(pred, labels) -> np.ndarray:
    """Each label's F1 over the examples (0.0 where a label is neither present nor predicted)."""
    pred, labels = _label_rows(pred, labels)
    true_pos = np.sum(pred & labels, axis=0)
    denominator = np.sum(pred, axis=0) + np.sum(labels, axis=0)
    return np.divide(
        2.0 * true_pos, denominator, out=np.zeros(len(true_pos)), where=denominator > 0
    )


def macro_f1(pred, labels) -> float:
    """Multi-label F1: the mean of each label's F1, every label counting the same."""
    return float(np.mean(per_label_f1(pred, labels)))


def subset_accuracy(pred, labels) -> float:
    """Fraction of examples whose predicted label set is exactly right (every label)."""
    pred, labels = _label_rows(pred, labels)
    return float(np.mean(np.all(pred == labels, axis=1)))


METRICS: dict[str, Callable[..., float]] = {
    "accuracy": accuracy,
    "f1": f1_score,
    "matthews_correlation": matthews_corrcoef,
    "pearson": pearson,
    "spearman": spearman,
    "micro_f1": micro_f1,
    "macro_f1": macro_f1,
    "subset_accuracy": subset_accuracy,
}


def compute_metrics(names: Sequence[str], predictions, labels) -> dict[str, float]:
    """Each named metric of ``predictions`` against ``labels``, in the order named.

    ``predictions`` are class ids for accuracy, f1 and matthews_correlation (take the argmax
    of the logits first), scores for pearson and spearman, and 0/1 rows [n, labels] for the
    multi-label metrics (micro_f1, macro_f1, subset_accuracy). An unknown name raises
    :class:`ConfigError` naming it and the closest known one.
    """
    if isinstance(names, str):
        names = [names]
    for name in names:
        if name not in METRICS:
            close = difflib.get_close_matches(name, list(METRICS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown metric {name!r}{hint}; known: {', '.join(METRICS)}")
    return {name: METRICS[name](predictions, labels) for name in names}


def collapse_message(
    predictions, label_names: Sequence[str], problem_type: ProblemType
) -> str | None:
    """A plain warning when a model's predictions have collapsed, else None.

    Classification collapses when every example gets the same class (MRPC's "always
    paraphrase" still scores 0.684 accuracy / 0.812 F1); regression when the outputs are
    nearly constant (standard deviation under 1% of their mean magnitude, or under 1e-4).
    """
    values = np.asarray(predictions)
    if values.size == 0:
        return None
    if problem_type == MULTI_LABEL:
        rows = np.unique(values.astype(bool), axis=0)
        if len(rows) == 1:
            chosen = [name for name, on in zip(label_names, rows[0]) if on]
            return (
                f"collapse: the model predicts the labels {chosen} for all {len(values)} examples"
            )
        return None
    if problem_type == REGRESSION:
        spread = float(np.std(values))
        if spread < max(1e-4, 0.01 * float(np.mean(np.abs(values)))):
            return (
                f"collapse: the model predicts nearly the same score ({float(np.mean(values)):.4f}"
                f" ± {spread:.2g}) for all {values.size} examples"
            )
        return None
    classes = np.unique(values)
    if classes.size == 1:
        name = label_names[int(classes[0])] if int(classes[0]) < len(label_names) else classes[0]
        return f"collapse: the model predicts {name!r} for all {values.size} examples"
    return None
