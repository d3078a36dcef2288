"""The per-class report of ``bertfit evaluate --report``: precision, recall, F1 and support of
each label, their macro and weighted averages, and the confusion matrix.

The arithmetic is scikit-learn's (``precision_recall_fscore_support``, ``confusion_matrix``),
imported only here and only when a report is asked for: it is the ``report`` extra, not a
dependency of training or prediction. Undefined ratios (a label never predicted, or never
present) are 0, as scikit-learn's ``zero_division=0`` gives.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bertfit.errors import ConfigError
from bertfit.problem import MULTI_LABEL, REGRESSION, ProblemType

FIELDS = ("precision", "recall", "f1", "support")


def _sklearn_metrics():
    try:  # the report extra: scikit-learn is needed for --report alone
        from sklearn import metrics
    except ImportError:
        raise ConfigError(
            "--report needs scikit-learn: pip install 'bertfit[report]' (or scikit-learn)"
        ) from None
    return metrics


def _row(precision, recall, f1, support) -> dict[str, float | int]:
    return {
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "support": int(support),
    }


def classification_report(
    predictions: np.ndarray,
    labels: np.ndarray,
    label_names: Sequence[str],
    problem_type: ProblemType,
) -> dict:
    """The report of ``predictions`` against ``labels``, JSON-ready.

    ``predictions`` and ``labels`` are class ids [n] for single-label classification (0/1
    rows [n, labels] for multi-label: see :func:`_multi_label_report`). Returns
    ``{"labels": {name: {precision, recall, f1, support}}, "averages": {"macro": ...,
    "weighted": ...}, "accuracy": ..., "confusion_matrix": {"labels": [...], "matrix":
    [[...]]}}``; the matrix's rows are the true labels and its columns the predicted ones.
    """
    if problem_type == REGRESSION:
        raise ConfigError("--report needs classes; this model is a regression")
    metrics = _sklearn_metrics()
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if problem_type == MULTI_LABEL:
        return _multi_label_report(metrics, predictions, labels, label_names)
    ids = list(range(len(label_names)))
    per_label = metrics.precision_recall_fscore_support(
        labels, predictions, labels=ids, zero_division=0
    )
    report: dict = {
        "labels": {name: _row(*values) for name, *values in zip(label_names, *per_label)}
    }
    averages = {}
    for average in ("macro", "weighted"):
        precision, recall, f1, _ = metrics.precision_recall_fscore_support(
            labels, predictions, labels=ids, average=average, zero_division=0
        )
        averages[average] = _row(precision, recall, f1, len(labels))
    report["averages"] = averages
    report["accuracy"] = float(metrics.accuracy_score(labels, predictions))
    matrix = metrics.confusion_matrix(labels, predictions, labels=ids)
    report["confusion_matrix"] = {"labels": list(label_names), "matrix": matrix.tolist()}
    return report


def _multi_label_report(metrics, predictions, labels, label_names) -> dict:
    """The multi-label report: each label as a binary decision, the micro average (every
    decision pooled) besides macro and weighted, subset accuracy, and one 2 x 2 confusion
    matrix per label."""
    predictions, labels = predictions.astype(np.int64), labels.astype(np.int64)
    per_label = metrics.precision_recall_fscore_support(labels, predictions, zero_division=0)
    report: dict = {
        "labels": {name: _row(*values) for name, *values in zip(label_names, *per_label)}
    }
    averages = {}
    for average in ("micro", "macro", "weighted"):
        precision, recall, f1, _ = metrics.precision_recall_fscore_support(
            labels, predictions, average=average, zero_division=0
        )
        averages[average] = _row(precision, recall, f1, int(labels.sum()))
    report["averages"] = averages
    report["subset_accuracy"] = float(metrics.accuracy_score(labels, predictions))
    matrices = metrics.multilabel_confusion_matrix(labels, predictions)
    report["confusion_matrices"] = {
        name: {"tn": int(m[0, 0]), "fp": int(m[0, 1]), "fn": int(m[1, 0]), "tp": int(m[1, 1])}
        for name, m in zip(label_names, matrices)
    }
    return report


def format_report(report: dict) -> str:
    """The report as a table and a confusion matrix, for the console."""
    names = list(report["labels"])
    width = max(12, *(len(name) for name in names)) + 2
    lines = [f"{'':<{width}}" + "".join(f"{field:>11}" for field in FIELDS)]
    for name, row in report["labels"].items():
        lines.append(_format_row(name, row, width))
    lines.append("")
    for average, row in report["averages"].items():
        lines.append(_format_row(f"{average} avg", row, width))
    for name in ("accuracy", "subset_accuracy"):
        if name in report:
            lines.append(f"{name.replace('_', ' '):<{width}}{'':>22}{report[name]:>11.4f}")
    matrices = report.get("confusion_matrices")
    if matrices is not None:
        lines += ["", "confusion per label (tn: neither, fp: predicted only, fn: missed, tp: both)"]
        lines.append(f"{'':<{width}}" + "".join(f"{key:>9}" for key in ("tn", "fp", "fn", "tp")))
        for name, counts in matrices.items():
            lines.append(f"{name:<{width}}" + "".join(f"{count:>9}" for count in counts.values()))
    confusion = report.get("confusion_matrix")
    if confusion is not None:
        lines += ["", "confusion matrix (rows: true label, columns: predicted label)"]
        cell = max(8, *(len(name) + 2 for name in names))
        lines.append(f"{'':<{width}}" + "".join(f"{name:>{cell}}" for name in confusion["labels"]))
        for name, counts in zip(confusion["labels"], confusion["matrix"]):
            lines.append(f"{name:<{width}}" + "".join(f"{count:>{cell}}" for count in counts))
    return "\n".join(lines)


def _format_row(name: str, row: dict, width: int) -> str:
    numbers = "".join(f"{row[field]:>11.4f}" for field in FIELDS[:3])
    return f"{name:<{width}}{numbers}{row['support']:>11}"
