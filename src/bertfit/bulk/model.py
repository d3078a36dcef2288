"""The model of a bulk prediction: a run's PyTorch classifier or a torch-free export.

:func:`load_model` opens either through :func:`bertfit.predictors.load_predictor` (the one
choice of "a run or an export") and adds what the bulk engine needs besides: a fingerprint of
the weights, so a resumed job can tell that the model changed. :func:`result_columns` is
:func:`bertfit.predictions.prediction_columns` (the one function from logits to result fields)
as Arrow columns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from bertfit.export.manifest import MANIFEST_FILE
from bertfit.paths import find_model_dir, sha256_file
from bertfit.predictions import prediction_columns
from bertfit.predictors import EXPORT, load_predictor, source_kind
from bertfit.problem import MULTI_LABEL, REGRESSION


@dataclass
class BulkModel:
    """What the bulk engine needs of a classifier."""

    predictor: Any  # a TextClassifier or an ExportedClassifier
    source: str
    input_names: tuple[str, ...]
    label_names: tuple[str, ...]
    problem_type: str
    fingerprint: str  # sha256 over the files that decide the outputs
    batch_size: int

    def logits(self, columns: list[list[str]]) -> np.ndarray:
        """Logits [n, outputs] of text columns, in input order. Both predictors run the rows
        in length-sorted batches and put the results back in the order given."""
        return self.predictor.logits(columns, self.batch_size)

    @property
    def regression(self) -> bool:
        """Whether the model outputs one score rather than class probabilities."""
        return self.problem_type == REGRESSION

    @property
    def temperature(self) -> float:
        """The fitted softmax temperature (1 when none was fitted)."""
        return self.predictor.temperature

    @property
    def thresholds(self) -> list[float] | None:
        """A multi-label model's decision thresholds, one per label (None: 0.5 each)."""
        thresholds = getattr(self.predictor, "thresholds", None)
        return None if thresholds is None else [float(value) for value in thresholds]

    @property
    def outputs(self) -> int:
        """How many logits the model gives per row."""
        return 1 if self.regression else len(self.label_names)


def is_export(source: str | Path) -> bool:
    """Whether ``source`` is an exported directory (it has a ``manifest.json``)."""
    return source_kind(source) == EXPORT


def load_model(source: str | Path, batch_size: int, threads: int | None = None) -> BulkModel:
    """The model of ``source``: an exported directory (ONNX Runtime, no torch) or a run / saved
    model directory (PyTorch)."""
    predictor = load_predictor(source, batch_size=batch_size, threads=threads)
    if is_export(source):
        where = Path(source)
        weights = [where / MANIFEST_FILE]  # it lists every file's sha256
    else:
        where = find_model_dir(source)
        weights = sorted(path for path in where.iterdir() if path.is_file())
    return BulkModel(
        predictor,
        str(where),
        tuple(predictor.input_names),
        tuple(predictor.label_names),
        predictor.problem_type,
        _fingerprint(weights),
        batch_size,
    )


def _fingerprint(paths: Sequence[Path]) -> str:
    """One sha256 over the files' names and contents (each hashed by
    :func:`~bertfit.paths.sha256_file`)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{path.name}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def result_columns(
    logits: np.ndarray,
    label_names: Sequence[str],
    problem_type: str,
    temperature: float,
    with_logits: bool = False,
    thresholds: Sequence[float] | None = None,
    decision_temperature: float | None = None,
) -> dict[str, pa.Array]:
    """The prediction columns of ``logits`` [n, outputs], as ``bertfit predict`` prints them:
    :func:`~bertfit.predictions.prediction_columns`, with ``logits`` only when asked.

    Single-label classification: ``label``, ``class_id`` and ``probabilities`` (one per class,
    ``softmax(logits / temperature)``); regression: ``score``; multi-label: ``labels`` (the
    names chosen by ``thresholds`` at ``decision_temperature``, see there) and
    ``probabilities`` (one sigmoid per label, in label order).
    """
    logits = np.asarray(logits, dtype=np.float32)
    fields = prediction_columns(
        logits, problem_type, list(label_names), temperature, thresholds, decision_temperature
    )
    columns: dict[str, pa.Array] = {}
    for name in result_names(problem_type, with_logits):
        values = fields[name]
        if values.ndim == 2:
            columns[name] = _lists(values.astype(np.float32))
        elif name == "label":
            columns[name] = pa.array(values.tolist(), type=pa.string())
        elif name == "labels":
            columns[name] = pa.array(values.tolist(), type=pa.list_(pa.string()))
        else:
            columns[name] = pa.array(values)
    return columns


def _lists(matrix: np.ndarray) -> pa.Array:
    """A list<float> column of the rows of a matrix, built without Python loops."""
    count, width = matrix.shape if matrix.ndim == 2 else (0, 0)
    offsets = pa.array(np.arange(count + 1, dtype=np.int32) * width)
    return pa.ListArray.from_arrays(offsets, pa.array(matrix.reshape(-1)))


def result_names(problem_type: str, with_logits: bool) -> tuple[str, ...]:
    """The names :func:`result_columns` gives, in order."""
    if problem_type == REGRESSION:
        names: tuple[str, ...] = ("score",)
    elif problem_type == MULTI_LABEL:
        names = ("labels", "probabilities")
    else:
        names = ("label", "class_id", "probabilities")
    return (*names, "logits") if with_logits else names
