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

import json
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
    _sorted_labels,
    build_user_task,
    file_format,
    iter_records,
    row_location,
    user_task,
)
from bertfit.errors import ConfigError, DataError
from bertfit.problem import MULTI_LABEL, REGRESSION, SINGLE_LABEL, ProblemType, task_type_of

# Distinct label strings kept by name; past this the labels can only be regression targets.
MAX_DISTINCT_LABELS = 100_000


@dataclass
class LabelScan:
    """The labels of a checked user file, one entry per example.

    ``codes[i]`` indexes ``names`` (the distinct label strings, first seen first); both are
    None when the file has more than :data:`MAX_DISTINCT_LABELS` distinct labels. ``values[i]``
    is the label as a number, NaN where it is not one; ``first_non_number`` is the line and
    text of the first such label.

    Multi-label files: a JSON array's distinct value is kept as its JSON text after
    :data:`LIST_MARK` (its codes in ``list_codes``); a row of several 0/1 columns
    (``indicator_columns``) as its digits. ``first_list``, ``first_separated`` and
    ``first_empty`` are the lines of the first JSON array, the first CSV/TSV label holding
    ``separator`` (None for JSON lines) and the first empty label: what deciding the problem
    type reads.
    """

    source: str
    lines: np.ndarray
    values: np.ndarray
    codes: np.ndarray | None
    names: list[str] | None
    first_non_number: tuple[int, str] | None
    list_codes: frozenset[int] = frozenset()
    first_list: int | None = None
    first_separated: int | None = None
    first_empty: int | None = None
    separator: str | None = None
    label_column: str = "label"
    indicator_columns: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.lines)

    def first_line_of(self, codes) -> int:
        """The line of the first row whose label has one of ``codes``."""
        return int(self.lines[np.flatnonzero(np.isin(self.codes, list(codes)))[0]])

    def label_sets(self) -> list[list[str]]:
        """The label names of each distinct label (``names``), read as a multi-label row.

        Raises:
            DataError: naming the first row of a JSON lines file whose label is not a list.
        """
        if self.names is None:
            raise DataError(
                f"{self.source}: more than {MAX_DISTINCT_LABELS} distinct label lists; too "
                "many for this reader"
            )
        if self.indicator_columns:
            return [
                [name for name, bit in zip(self.indicator_columns, key) if bit == "1"]
                for key in self.names
            ]
        if self.separator is None:  # JSON lines and Parquet: lists only
            others = [code for code in range(len(self.names)) if code not in self.list_codes]
            if others:
                line = self.first_line_of(others)
                text = self.names[self.codes[np.flatnonzero(self.lines == line)[0]]]
                listed = "a JSON array" if file_format(Path(self.source)) == "jsonl" else "a list"
                where = row_location(self.source, line)
                raise DataError(
                    f"{where}: column {self.label_column!r} must hold {listed} of label names "
                    f"(a multi-label column), got {text}"
                )
        sets = []
        for code, key in enumerate(self.names):
            if code in self.list_codes:
                sets.append(json.loads(key[len(LIST_MARK) :]))
            else:
                parts = (part.strip() for part in key.split(self.separator))
                sets.append(list(dict.fromkeys(part for part in parts if part)))
        return sets


#: Marks a JSON array's text among the distinct labels, so that no CSV field can equal it.
LIST_MARK = "\x00list:"


class _LabelCollector:
    """Grows the arrays of a :class:`LabelScan` row by row (amortised, a few bytes a row)."""

    def __init__(self, separator: str | None = None) -> None:
        self.lines = array("q")
        self.values = array("d")
        self.codes: array | None = array("i")
        self.index: dict[str, int] | None = {}
        self.first_non_number: tuple[int, str] | None = None
        self.separator = separator
        self.list_codes: set[int] = set()
        self.first_list: int | None = None
        self.first_separated: int | None = None
        self.first_empty: int | None = None

    def add(self, line: int, label: str | list[str]) -> None:
        if isinstance(label, list):
            if self.first_list is None:
                self.first_list = line
            label = LIST_MARK + json.dumps(label)
        elif not label and self.first_empty is None:
            self.first_empty = line
        elif self.separator and self.first_separated is None and self.separator in label:
            self.first_separated = line
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
            if label.startswith(LIST_MARK):
                self.list_codes.add(code)
        self.codes.append(code)

    def result(self, source: str, columns: Columns) -> LabelScan:
        codes = None if self.codes is None else np.frombuffer(self.codes, dtype=np.int32)
        names = None if self.index is None else list(self.index)
        return LabelScan(
            source,
            np.frombuffer(self.lines, dtype=np.int64),
            np.frombuffer(self.values, dtype=np.float64),
            codes,
            names,
            self.first_non_number,
            frozenset(self.list_codes),
            self.first_list,
            self.first_separated,
            self.first_empty,
            self.separator,
            columns.label,
            columns.label_columns,
        )


def scan_user_file(path: str | Path, columns: Columns) -> LabelScan:
    """Check every row of a user file and keep its labels; the texts are not kept.

    Raises the same :class:`DataError` as :func:`~bertfit.data.user_files.read_user_file`
    (missing file or column, empty text, bad row), naming the file and line; an empty label
    is an error once the labels turn out not to be multi-label (:func:`scan_task`).
    """
    path = Path(path)
    # JSON lines and Parquet hold lists as lists; only CSV/TSV fields join names by a separator.
    separator = columns.separator if file_format(path) in ("csv", "tsv") else None
    labels = _LabelCollector(separator)
    fields = (*columns.texts, *(columns.label_columns or (columns.label,)))
    for line, record in iter_records(path, fields, keep_lists=True):
        for name in columns.texts:
            _field(path, line, record, name, text=True)
        if columns.label_columns:
            labels.add(line, _indicator_key(path, line, record, columns.label_columns))
        else:
            labels.add(line, _label_value(path, line, record, columns.label))
    if not labels.lines:
        raise DataError(f"{path}: no examples found")
    return labels.result(str(path), columns)


def _label_value(path: Path, line: int, record: dict, name: str) -> str | list[str]:
    """A row's label field: its text (stripped; a Parquet number as its JSON text), or the
    names of a list (a JSON array, a Parquet list). An empty text is kept: a multi-label row
    may have no label, which :func:`scan_task` refuses for other problem types."""
    value = record.get(name)
    if not isinstance(value, list):
        if isinstance(value, str) and not value.strip():
            return ""
        return _field(path, line, record, name, text=False)
    names = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            found = json.dumps(item, default=str)
            raise DataError(
                f"{row_location(path, line)}: column {name!r}: a label list holds {found}, "
                "not a label name (a non-empty string)"
            )
        names.append(item.strip())
    return list(dict.fromkeys(names))  # a name twice in one row is the label once


def _indicator_key(path: Path, line: int, record: dict, names: tuple[str, ...]) -> str:
    """A row's 0/1 label columns as one string of digits, each checked."""
    digits = []
    for name in names:
        if name not in record:
            found = ", ".join(record) or "none"
            raise DataError(f"{row_location(path, line)}: missing column {name!r} (found: {found})")
        value = record[name]
        if isinstance(value, bool):  # a Parquet boolean column
            value = int(value)
        text = value.strip() if isinstance(value, str) else json.dumps(value, default=str)
        if text not in ("0", "1"):
            raise DataError(
                f"{row_location(path, line)}: column {name!r} must hold 0 or 1, got {text!r}"
            )
        digits.append(text)
    return "".join(digits)


def scan_task(
    scan: LabelScan,
    columns: Columns,
    problem_type: ProblemType | None = None,
    label_names: list[str] | None = None,
) -> tuple[TaskSpec, str]:
    """:func:`~bertfit.data.user_files.user_task` from scanned labels: the task, and how its
    problem type was chosen (``problem_type`` None: inferred from the labels).

    Multi-label when asked, when the labels are 0/1 columns, JSON arrays or (CSV/TSV, not
    asked otherwise) fields holding the separator.
    """
    multi = _multi_label_reason(scan, columns, problem_type)
    if multi is not None:
        return _multi_label_task(scan, columns, label_names), multi
    if scan.first_empty is not None:
        where = row_location(scan.source, scan.first_empty)
        raise DataError(
            f"{where}: empty label in column {columns.label!r} "
            "(rows without a label belong to a multi-label column: --multi-label)"
        )
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


def _multi_label_reason(
    scan: LabelScan, columns: Columns, problem_type: ProblemType | None
) -> str | None:
    """Why the labels are multi-label (the console's ``task type:`` line), or None."""
    if problem_type not in (None, MULTI_LABEL):
        word = task_type_of(problem_type)
        if columns.label_columns:
            raise ConfigError(
                f"data.label_columns make a multi-label task, not a {word} "
                f"(leave out --{word} or data.task_type)"
            )
        if scan.first_list is not None:
            where = row_location(scan.source, scan.first_list)
            raise DataError(
                f"{where}: column {columns.label!r} holds a list of "
                f"labels (multi-label), not a {word} label; leave out --{word} (or give "
                "--multi-label)"
            )
        if scan.first_separated is not None:  # a CSV/TSV list: names joined by the separator
            where = row_location(scan.source, scan.first_separated)
            raise DataError(
                f"{where}: column {columns.label!r} holds labels separated by "
                f"{columns.separator!r} (multi-label), not a {word} label; leave out --{word} "
                "(or give --multi-label), or another --label-separator if it is part of a name"
            )
        return None
    if problem_type == MULTI_LABEL:
        return "multi-label (as asked)"
    if columns.label_columns:
        return f"{len(columns.label_columns)} 0/1 label columns: multi-label"
    if scan.first_list is not None:
        return "labels are lists: multi-label"
    if scan.first_separated is not None:
        return f"labels hold lists separated by {columns.separator!r}: multi-label"
    return None


def _multi_label_task(scan: LabelScan, columns: Columns, label_names: list[str] | None) -> TaskSpec:
    if columns.label_columns:
        names = list(columns.label_columns)
    elif label_names:
        names = list(label_names)
    else:
        seen = {name for names in scan.label_sets() for name in names}
        if not seen:
            raise DataError(f"{scan.source}: no labels at all in column {columns.label!r}")
        names = _sorted_labels(list(seen))
    return build_user_task(columns, MULTI_LABEL, names)


def _too_many_labels(source: str) -> DataError:
    return DataError(
        f"{source}: more than {MAX_DISTINCT_LABELS} distinct labels, too many for classes "
        "(numeric targets train as a regression)"
    )


def scan_label_ids(scan: LabelScan, task: TaskSpec, split: str) -> np.ndarray:
    """Class ids (``int64``), regression targets (``float32``) or, for a multi-label task,
    one 0/1 row per example (``float32`` [n, labels]) of scanned labels.

    Raises the errors of :func:`~bertfit.data.user_files.label_examples`, at the first bad row.
    """
    if task.problem_type == MULTI_LABEL:
        return _multi_label_rows(scan, task, split)
    if scan.first_list is not None:
        where = row_location(scan.source, scan.first_list)
        raise DataError(
            f"{where}: column {scan.label_column!r} holds a list of "
            "labels, but the model takes one label per example"
        )
    if scan.first_empty is not None:
        where = row_location(scan.source, scan.first_empty)
        raise DataError(f"{where}: empty label in column {scan.label_column!r}")
    if task.problem_type == REGRESSION:
        if scan.first_non_number is not None:
            line, text = scan.first_non_number
            raise DataError(
                f"{row_location(scan.source, line)}: column {scan.label_column!r}: regression "
                f"target {text!r} is not a number"
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
            f"{row_location(scan.source, int(scan.lines[first]))}: column "
            f"{scan.label_column!r}: label {text!r} {where} ({', '.join(ids)})"
        )
    return labels


def _multi_label_rows(scan: LabelScan, task: TaskSpec, split: str) -> np.ndarray:
    """The 0/1 matrix [n, labels] of a multi-label task's scanned labels."""
    ids = {name: i for i, name in enumerate(task.label_names)}
    table = np.zeros((len(scan.names or ()), len(ids)), dtype=np.float32)
    bad: dict[int, str] = {}  # code -> its first unknown name
    for code, names in enumerate(scan.label_sets()):
        for name in names:
            if name in ids:
                table[code, ids[name]] = 1.0
            else:
                bad.setdefault(code, name)
    if bad:
        line = scan.first_line_of(bad)
        code = int(scan.codes[np.flatnonzero(scan.lines == line)[0]])
        where = "never seen in train" if split != "train" else "not among the given labels"
        raise DataError(
            f"{row_location(scan.source, line)}: column {scan.label_column!r}: label "
            f"{bad[code]!r} {where} ({', '.join(ids)})"
        )
    return table[scan.codes]


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
