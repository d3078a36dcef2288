"""Readers for labelled text files: GLUE TSV splits and prediction inputs (TSV or JSON lines).

GLUE files are tab-separated UTF-8 without quoting (a quote character is literal text), some
start with a byte-order mark, so they are read with ``csv.QUOTE_NONE`` and ``utf-8-sig``.
Every problem is a :class:`DataError` naming the file and line.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bertfit.data.tasks import SplitLayout, TaskSpec
from bertfit.errors import DataError
from bertfit.problem import REGRESSION

# Real GLUE rows are short, but csv's default field limit (128 KiB) is an arbitrary cap.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass
class TextExamples:
    """Texts in columns (one list per text field, equal lengths) with optional class ids."""

    columns: list[list[str]]
    labels: list[int] | list[float] | None
    source: str

    def __len__(self) -> int:
        return len(self.columns[0]) if self.columns else 0

    def iter_chunks(self, rows: int) -> Iterator[list[list[str]]]:
        """The text columns ``rows`` examples at a time (what streaming encoders consume)."""
        for start in range(0, len(self), rows):
            yield [column[start : start + rows] for column in self.columns]

    def select(self, indices: list[int]) -> TextExamples:
        """A subset in the order of ``indices``."""
        columns = [[column[i] for i in indices] for column in self.columns]
        labels = None if self.labels is None else [self.labels[i] for i in indices]
        return TextExamples(columns, labels, self.source)


def open_text(path: Path):
    """Open a UTF-8 text file (a leading byte-order mark skipped) for csv or line reading.

    A missing or unreadable file is a :class:`DataError` naming it.
    """
    try:
        return open(path, encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror})") from None


def iter_json_objects(path: Path, handle) -> Iterator[tuple[int, dict]]:
    """(line number, object) for every non-blank line of an open JSON lines file."""
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}:{number}: not valid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}:{number}: expected a JSON object")
        yield number, record


def _open_rows(path: Path):
    handle = open_text(path)
    return handle, csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)


def read_glue_split(path: str | Path, task: TaskSpec, split: str) -> TextExamples:
    """Read one GLUE split of ``task``; test splits have no labels.

    Classification labels become class ids (positions in ``task.label_values``); a regression
    task's labels are floats.
    """
    path = Path(path)
    layout = task.layout(split)
    handle, rows = _open_rows(path)
    with handle:
        try:
            first = next(rows, None)
            if first is None:
                raise DataError(f"{path}: file is empty")
            width, positions = _layout_positions(path, first, layout)
            columns: list[list[str]] = [[] for _ in layout.text_columns]
            raw_labels: list[tuple[int, str]] = []
            for line, row in _numbered_rows(first, rows, layout.header):
                if len(row) != width:
                    raise DataError(
                        f"{path}:{line}: expected {width} tab-separated fields, found {len(row)}"
                    )
                for column, position in zip(columns, positions):
                    column.append(row[position])
                if layout.label_column is not None:
                    raw_labels.append((line, row[positions[-1]].strip()))
        except UnicodeDecodeError:
            raise DataError(f"{path}: not UTF-8 text (near line {rows.line_num + 1})") from None
    if not columns[0]:
        raise DataError(f"{path}: no examples" + (" after the header" if layout.header else ""))
    labels = None if layout.label_column is None else _parse_labels(path, task, raw_labels)
    return TextExamples(columns, labels, str(path))


def _numbered_rows(first: list[str], rows, header: bool):
    """(line number, fields) of every non-empty data row; the first row unless it is a header."""
    if not header:
        yield 1, first
    for row in rows:
        if row:
            yield rows.line_num, row


def _layout_positions(path: Path, first: list[str], layout: SplitLayout) -> tuple[int, list[int]]:
    """Row width and the positions of the text fields (then the label field, if any)."""
    wanted = list(layout.text_columns)
    if layout.label_column is not None:
        wanted.append(layout.label_column)
    if not layout.header:
        needed = max(wanted) + 1
        if len(first) < needed:
            raise DataError(f"{path}:1: expected at least {needed} fields, found {len(first)}")
        return len(first), wanted
    header = [name.strip() for name in first]
    missing = [name for name in wanted if name not in header]
    if missing:
        raise DataError(
            f"{path}:1: missing column {missing[0]!r} in header (found: {', '.join(header)})"
        )
    return len(header), [header.index(name) for name in wanted]


def _parse_labels(path: Path, task: TaskSpec, raw: list[tuple[int, str]]) -> list:
    """Class ids (or floats for regression) from the label fields, with line-numbered errors."""
    if task.problem_type == REGRESSION:
        return [_parse_target(path, line, text) for line, text in raw]
    ids = {value: i for i, value in enumerate(task.label_values)}
    labels = []
    for line, text in raw:
        if text not in ids:
            raise DataError(
                f"{path}:{line}: unknown label {text!r} (expected one of: "
                f"{', '.join(task.label_values)})"
            )
        labels.append(ids[text])
    return labels


def _parse_target(path: Path, line: int, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise DataError(f"{path}:{line}: regression target {text!r} is not a number")
    return value


def read_prediction_input(path: str | Path, input_names: tuple[str, ...]) -> list[list[str]]:
    """Read texts to classify: JSON lines with ``input_names`` keys, or a TSV file.

    A TSV file has one example per line with ``len(input_names)`` tab-separated fields; a first
    line equal to the input names is taken as a header and skipped.
    """
    path = Path(path)
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        return _read_jsonl_texts(path, input_names)
    handle, rows = _open_rows(path)
    columns: list[list[str]] = [[] for _ in input_names]
    with handle:
        try:
            for row in rows:
                line = rows.line_num
                if not row or (line == 1 and tuple(f.strip() for f in row) == input_names):
                    continue
                if len(row) != len(input_names):
                    raise DataError(
                        f"{path}:{line}: expected {len(input_names)} tab-separated fields "
                        f"({', '.join(input_names)}), found {len(row)}"
                    )
                for column, text in zip(columns, row):
                    column.append(text)
        except UnicodeDecodeError:
            raise DataError(f"{path}: not UTF-8 text (near line {rows.line_num + 1})") from None
    if not columns[0]:
        raise DataError(f"{path}: no examples found")
    return columns


def _read_jsonl_texts(path: Path, input_names: tuple[str, ...]) -> list[list[str]]:
    columns: list[list[str]] = [[] for _ in input_names]
    with open_text(path) as handle:
        try:
            for number, record in iter_json_objects(path, handle):
                for column, name in zip(columns, input_names):
                    if name not in record:
                        raise DataError(f"{path}:{number}: missing field {name!r}")
                    if not isinstance(record[name], str):
                        raise DataError(f"{path}:{number}: field {name!r} must be a string")
                    column.append(record[name])
        except UnicodeDecodeError:
            raise DataError(f"{path}: not UTF-8 text") from None
    if not columns[0]:
        raise DataError(f"{path}: no examples found")
    return columns
