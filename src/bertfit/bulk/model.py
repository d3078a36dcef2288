"""The model of a bulk prediction: a run's PyTorch classifier or a torch-free export.

One small adapter gives both the same face (input names, label names, logits of text columns,
a fingerprint of the weights), and :func:`result_columns` turns logits into the output columns.
Both stand in for shared pieces being written beside this package: the choice "a run or an
export" (like :func:`bertfit.explain.load.load_explainer`, which this mirrors) and the one
function from logits to result rows; once those land, this module calls them.
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
from bertfit.paths import find_model_dir
from bertfit.probabilities import softmax


@dataclass
class BulkModel:
    """What the bulk engine needs of a classifier."""

    predictor: Any  # a TextClassifier or an ExportedClassifier
    source: str
    input_names: tuple[str, ...]
    label_names: tuple[str, ...]
    regression: bool
    fingerprint: str  # sha256 over the files that decide the outputs
    batch_size: int

    def logits(self, columns: list[list[str]]) -> np.ndarray:
        """Logits [n, outputs] of text columns, in input order. Both predictors run the rows
        in length-sorted batches and put the results back in the order given."""
        return self.predictor.logits(columns, self.batch_size)

    @property
    def temperature(self) -> float:
        """The fitted softmax temperature (1 when none was fitted)."""
        return self.predictor.temperature


def is_export(source: str | Path) -> bool:
    """Whether ``source`` is an exported directory (it has a ``manifest.json``)."""
    return (Path(source) / MANIFEST_FILE).is_file()


def load_model(source: str | Path, batch_size: int, threads: int | None = None) -> BulkModel:
    """The model of ``source``: an exported directory (ONNX Runtime, no torch) or a run / saved
    model directory (PyTorch)."""
    # TODO(shared loader): replace this choice with the one module that every command taking
    # "a run or an export" uses, once it is merged.
    source = Path(source)
    if is_export(source):
        from bertfit.export.runtime import load_exported  # onnxruntime only on this path

        predictor = load_exported(source, batch_size=batch_size, threads=threads)
        return BulkModel(
            predictor,
            str(source),
            tuple(predictor.input_names),
            tuple(predictor.label_names),
            predictor.spec.model.num_classes == 1,
            _sha256_files([source / MANIFEST_FILE]),  # it lists every file's sha256
            batch_size,
        )
    model_dir = find_model_dir(source)
    # torch: an exported directory is run without it.
    from bertfit.inference import TextClassifier

    if threads is not None:
        import torch  # loaded already by TextClassifier; threads are a torch setting

        torch.set_num_threads(threads)
    classifier = TextClassifier.from_pretrained(model_dir)
    return BulkModel(
        classifier,
        str(model_dir),
        tuple(classifier.info.input_names),
        tuple(classifier.info.label_names),
        bool(classifier.model.is_regression),
        _sha256_files(sorted(p for p in model_dir.iterdir() if p.is_file())),
        batch_size,
    )


def _sha256_files(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def result_columns(
    logits: np.ndarray,
    label_names: Sequence[str],
    regression: bool,
    temperature: float,
    with_logits: bool = False,
) -> dict[str, pa.Array]:
    """The prediction columns of ``logits`` [n, outputs], as ``bertfit predict`` prints them.

    Classification: ``label``, ``class_id`` and ``probabilities`` (one per class,
    ``softmax(logits / temperature)``); regression: ``score``. ``logits`` too when asked.
    """
    logits = np.asarray(logits, dtype=np.float32)
    count = len(logits)
    columns: dict[str, pa.Array] = {}
    if regression:
        columns["score"] = pa.array(logits[:, 0] if count else np.zeros(0, np.float32))
    else:
        class_ids = logits.argmax(axis=-1) if count else np.zeros(0, np.int64)
        names = np.asarray(list(label_names), dtype=object)
        columns["label"] = pa.array(names[class_ids].tolist(), type=pa.string())
        columns["class_id"] = pa.array(class_ids.astype(np.int64))
        columns["probabilities"] = _lists(softmax(logits, temperature).astype(np.float32))
    if with_logits:
        columns["logits"] = _lists(logits)
    return columns


def _lists(matrix: np.ndarray) -> pa.Array:
    """A list<float> column of the rows of a matrix, built without Python loops."""
    count, width = matrix.shape if matrix.ndim == 2 else (0, 0)
    offsets = pa.array(np.arange(count + 1, dtype=np.int32) * width)
    return pa.ListArray.from_arrays(offsets, pa.array(matrix.reshape(-1)))


def result_names(regression: bool, with_logits: bool) -> tuple[str, ...]:
    """The names :func:`result_columns` gives, in order."""
    names = ("score",) if regression else ("label", "class_id", "probabilities")
    return (*names, "logits") if with_logits else names
