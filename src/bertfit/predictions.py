"""Logits to results: the one function behind ``predict``, the exported predictor and the server.

:func:`prediction_columns` gives one numpy column per field and :func:`prediction_rows` the same
fields as one dict per example, so every way of running a model answers with the same names:

- single-label classification: ``label`` (the class name), ``class_id`` (the argmax),
  ``probabilities`` (``softmax(logits / temperature)``) and ``logits``;
- regression: ``score`` (the one output) and ``logits``;
- multi-label classification: ``labels`` (the names of the labels whose probability reaches
  their threshold, in label order; possibly none), ``probabilities``
  (``sigmoid(logits / temperature)``; a row holds them keyed by label name) and ``logits``.

Numbers are not rounded anywhere: each is the float32 the model computed (a row holds it as a
Python float). numpy only, for the torch-free runtime.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bertfit.probabilities import chosen_labels, sigmoid, softmax
from bertfit.problem import MULTI_LABEL, REGRESSION, SINGLE_LABEL, ProblemType


def prediction_columns(
    logits: np.ndarray,
    problem_type: ProblemType,
    label_names: Sequence[str],
    temperature: float = 1.0,
    thresholds: Sequence[float] | None = None,
    decision_temperature: float | None = None,
) -> dict[str, np.ndarray]:
    """The result fields of ``logits`` [n, outputs] as columns of n values (see the module docs).

    ``temperature`` scales the logits before the softmax or sigmoid (1: the raw
    probabilities); a regression's score does not use it. A multi-label model chooses the
    labels whose ``sigmoid(logits / decision_temperature)`` reaches ``thresholds`` (default
    0.5 each), ``decision_temperature`` being the model's own (default: ``temperature``), so
    that asking for raw probabilities does not change the labels.
    """
    logits = np.asarray(logits, dtype=np.float32)
    if problem_type == REGRESSION:
        return {"score": logits[:, 0], "logits": logits}
    if problem_type == MULTI_LABEL:
        decide = temperature if decision_temperature is None else decision_temperature
        chosen = chosen_labels(logits, decide, thresholds)
        names = np.asarray(label_names, dtype=np.str_)
        labels = np.empty(len(logits), dtype=object)
        labels[:] = [names[row].tolist() for row in chosen]
        return {"labels": labels, "probabilities": sigmoid(logits, temperature), "logits": logits}
    if problem_type != SINGLE_LABEL:
        raise ValueError(f"unknown problem type {problem_type!r}")
    class_id = logits.argmax(axis=-1).astype(np.int64)
    return {
        "label": np.asarray(label_names, dtype=np.str_)[class_id],
        "class_id": class_id,
        "probabilities": softmax(logits, temperature),
        "logits": logits,
    }


def prediction_rows(
    logits: np.ndarray,
    problem_type: ProblemType,
    label_names: Sequence[str],
    temperature: float = 1.0,
    thresholds: Sequence[float] | None = None,
    decision_temperature: float | None = None,
) -> list[dict]:
    """One JSON-ready dict per example: :func:`prediction_columns` read across (a multi-label
    row's probabilities keyed by label name)."""
    columns = prediction_columns(
        logits, problem_type, label_names, temperature, thresholds, decision_temperature
    )
    values = [column.tolist() for column in columns.values()]
    rows = [dict(zip(columns, row)) for row in zip(*values)]
    if problem_type == MULTI_LABEL:
        for row in rows:
            row["probabilities"] = dict(zip(label_names, row["probabilities"]))
    return rows
