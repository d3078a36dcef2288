"""Logits to results: the one function behind ``predict``, the exported predictor and the server.

:func:`prediction_columns` gives one numpy column per field and :func:`prediction_rows` the same
fields as one dict per example, so every way of running a model answers with the same names:

- single-label classification: ``label`` (the class name), ``class_id`` (the argmax),
  ``probabilities`` (``softmax(logits / temperature)``) and ``logits``;
- regression: ``score`` (the one output) and ``logits``.

Numbers are not rounded anywhere: each is the float32 the model computed (a row holds it as a
Python float). numpy only, for the torch-free runtime.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bertfit.probabilities import softmax
from bertfit.problem import REGRESSION, SINGLE_LABEL, ProblemType


def prediction_columns(
    logits: np.ndarray,
    problem_type: ProblemType,
    label_names: Sequence[str],
    temperature: float = 1.0,
) -> dict[str, np.ndarray]:
    """The result fields of ``logits`` [n, outputs] as columns of n values (see the module docs).

    ``temperature`` scales the logits before the softmax (1: the raw softmax); a regression's
    score does not use it.
    """
    logits = np.asarray(logits, dtype=np.float32)
    if problem_type == REGRESSION:
        return {"score": logits[:, 0], "logits": logits}
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
) -> list[dict]:
    """One JSON-ready dict per example: :func:`prediction_columns` read across."""
    columns = prediction_columns(logits, problem_type, label_names, temperature)
    values = [column.tolist() for column in columns.values()]
    return [dict(zip(columns, row)) for row in zip(*values)]
