"""Users' own files of any size: labels in a first pass, texts streamed in a second.

:func:`~bertfit.data.user_files.read_user_file` keeps every text as a Python string, which for
a million rows is gigabytes. Here the file is read twice instead:

1. :func:`scan_user_file` checks every row (the same file and line errors) and keeps only the
   labels, compactly: each row's line number, its label as a code into the distinct label
   strings and as a number. That is all that deciding the task (classification or regression,
   label names; :func:`scan_task`) and mapping labels to ids (:func:`scan_label_ids`) need.
2. :class:`FileExamples` then reads the texts again a chunk at a time for the encoder
   (:meth:`FileExamples.iter_chunks`), so only one chunk of strings is alive at once.

Reading twice costs one more CSV parse, a few percent of tokenizing, and keeps the task decision
before any tokenizing, in the order ``bertfit train`` has always reported problems.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bertfit.data.readers import TextExamples
from bertfit.data.tasks import TaskSpec
from bertfit.data.user_files import (
    Columns,
    RawExamples,
    _as_number,
    _field,
    build_user_task,
    iter_records,
    row_location,
    user_task,
)
from bertfit.errors import DataError
from bertfit.problem import REGRESSION, SINGLE_LABEL, ProblemType

# Distinct label strings kept by name; past this the labels can only be regression targets.
MAX_DISTINCT_LABELS = 100_000


@dataclass
class LabelScan:
    """The labels of a checked user file, one entry per example.

    ``codes[i]`` indexes ``names`` (the distinct label strings, first seen first); both are
    None when the file has more than :data:`MAX_DISTINCT_LABELS` distinct labels. ``values[i]``
    is the label as a number, NaN where it is not one; ``first_non_number`` is the line and
    text of the first such label.
    """

    source: str
    lines: np.ndarray
    values: np.ndarray
    codes: np.ndarray | None
    names: list[str] | None
    first_non_number: tuple[int, str] | None

    def __len__(self) -> int:
        return len(self.lines)


class _LabelCollector:
    """Grows the arrays of a :class:`LabelScan` row by row (amortised, a few bytes a row)."""

    def __init__(self) -> None:
        self.lines = array("q")
        self.values = array("d")
        self.codes: array | None = array("i")
        self.index: dict[str, int] | None = {}
        self.first_non_number: tuple[int, str] | None = None

    def add(self, line: int, label: str) -> None:
        self.lines.append(line)
        value = _as_number(label)
        if value is None:
            value = math.nan
            if self.first_non_number is None:
                self.first_non_number = (line, label)
        self.values.append(value)
        if self.index is None:
            return
        code = self.index.get(label)
        if code is None:
            if len(self.index) >= MAX_DISTINCT_LABELS:
                self.index = self.codes = None  # too many to be classes; numbers suffice
                return
            code = self.index[label] = len(self.index)
        self.codes.append(code)

    def result(self, source: str) -> LabelScan:
        codes = None if self.codes is None else np.frombuffer(self.codes, dtype=np.int32)
        names = None if self.index is None else list(self.index)
        return LabelScan(
            source,
            np.frombuffer(self.lines, dtype=np.int64),
            np.frombuffer(self.values, dtype=np.float64),
            codes,
            names,
            self.first_non_number,
        )


def scan_user_file(path: str | Path, columns: Columns) -> LabelScan:
    """Check every row of a user file and keep its labels; the texts are not kept.

    Raises the same :class:`DataError` as :func:`~bertfit.data.user_files.read_user_file`
    (missing file or column, empty text or label, bad row), naming the file and line.
    """
    path = Path(path)
    labels = _LabelCollector()
    for line, record in iter_records(path, (*columns.texts, columns.label)):
        for name in columns.texts:
            _field(path, line, record, name, text=True)
        labels.add(line, _field(path, line, record, columns.label, text=False))
    if not labels.lines:
        raise DataError(f"{path}: no examples found")
    return labels.result(str(path))


def scan_task(
    scan: LabelScan,
    columns: Columns,
    problem_type: ProblemType | None = None,
    label_names: list[str] | None = None,
) -> tuple[TaskSpec, str]:
    """:func:`~bertfit.data.user_files.user_task` from scanned labels: the task, and how its
    problem type was chosen (``problem_type`` None: inferred from the labels)."""
    if scan.names is not None:
        # The decision depends on the distinct labels only, so they stand in for all of them.
        return user_task(
            RawExamples([], scan.names, [], scan.source), columns, problem_type, label_names
        )
    if problem_type == SINGLE_LABEL or np.isnan(scan.values).any():
        raise _too_many_labels(scan.source)
    if problem_type == REGRESSION:
        return build_user_task(columns, REGRESSION, ()), "regression (as asked)"
    if not np.all(np.mod(scan.values, 1) == 0):
        message = "labels are numbers with fractions: regression"
    else:
        message = f"labels are {len(np.unique(scan.values))} distinct numbers: regression"
    return build_user_task(columns, REGRESSION, ()), message


def _too_many_labels(source: str) -> DataError:
    return DataError(
        f"{source}: more than {MAX_DISTINCT_LABELS} distinct labels, too many for classes "
        "(numeric targets train as a regression)"
    )


def scan_label_ids(scan: LabelScan, task: TaskSpec, split: str) -> np.ndarray:
    """Class ids (``int64``) or regression targets (``float32``) of scanned labels.

    Raises the errors of :func:`~bertfit.data.user_files.label_examples`, at the first bad row.
    """
    if task.problem_type == REGRESSION:
        if scan.first_non_number is not None:
            line, text = scan.first_non_number
            raise DataError(
                f"{row_location(scan.source, line)}: regression target {text!r} is not a number"
            )
        return scan.values.astype(np.float32)
    if scan.names is None:
        raise _too_many_labels(scan.source)
    ids = {value: i for i, value in enumerate(task.label_values)}
    table = np.array([ids.get(name, -1) for name in scan.names], dtype=np.int64)
    labels = table[scan.codes]
    unknown = np.flatnonzero(labels < 0)
    if len(unknown):
        first = unknown[0]
        text = scan.names[scan.codes[first]]
        where = "never seen in train" if split != "train" else "not among the given labels"
        raise DataError(
            f"{row_location(scan.source, int(scan.lines[first]))}: label {text!r} {where} "
            f"({', '.join(ids)})"
        )
    return labels


@dataclass
class FileExamples:
    """Labelled examples of a user file whose texts stay on disk until encoded.

    Used where :class:`~bertfit.data.readers.TextExamples` is (``len``, ``labels``,
    ``source``, ``iter_chunks``); :attr:`columns` reads every text for callers that want
    them all at once.
    """

    path: Path
    fields: Columns
    labels: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.labels)

    def iter_chunks(self, rows: int) -> Iterator[list[list[str]]]:
        """The text columns ``rows`` examples at a time, read from the file as needed.

        Raises:
            DataError: if the file no longer has the rows it had when its labels were read.
        """
        chunk: list[list[str]] = [[] for _ in self.fields.texts]
        seen = 0
        for _line, record in iter_records(self.path, self.fields.texts):
            seen += 1
            if seen > len(self):
                break
            for column, name in zip(chunk, self.fields.texts):
                column.append(record.get(name, ""))
            if len(chunk[0]) == rows:
                yield chunk
                chunk = [[] for _ in self.fields.texts]
        if seen != len(self):
            raise DataError(f"{self.path}: the file changed while it was being read")
        if chunk[0]:
            yield chunk

    @property
    def columns(self) -> list[list[str]]:
        """Every text, one list per text column (the whole file in memory)."""
        columns: list[list[str]] = [[] for _ in self.fields.texts]
        for chunk in self.iter_chunks(65536):
            for column, part in zip(columns, chunk):
                column.extend(part)
        return columns

    def select(self, indices: list[int]) -> TextExamples:
        """A subset in the order of ``indices``, as in-memory :class:`TextExamples`."""
        return TextExamples(self.columns, self.labels.tolist(), self.source).select(indices)


def read_user_examples(
    path: str | Path, columns: Columns, task: TaskSpec, split: str
) -> FileExamples:
    """Labelled examples of a user file for a known task, texts left on disk."""
    scan = scan_user_file(path, columns)
    return FileExamples(Path(path), columns, scan_label_ids(scan, task, split), scan.source)
