"""Readers for labelled text files: GLUE TSV splits and prediction inputs (TSV or JSON lines).

GLUE files are tab-separated UTF-8 without quoting (a quote character is literal text), some
start with a byte-order mark, so they are read with ``csv.QUOTE_NONE`` and ``utf-8-sig``.
Every problem is a :class:`DataError` naming the file and line.
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from bertfit.data.tasks import TaskSpec
from bertfit.errors import DataError

# Real GLUE rows are short, but csv's default field limit (128 KiB) is an arbitrary cap.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass
class TextExamples:
    """Texts in columns (one list per text field, equal lengths) with optional class ids."""

    columns: list[list[str]]
    labels: list[int] | None
    source: str

    def __len__(self) -> int:
        return len(self.columns[0]) if self.columns else 0

    def select(self, indices: list[int]) -> TextExamples:
        """A subset in the order of ``indices``."""
        columns = [[column[i] for i in indices] for column in self.columns]
        labels = None if self.labels is None else [self.labels[i] for i in indices]
        return TextExamples(columns, labels, self.source)


def _open_rows(path: Path):
    try:
        handle = open(path, encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror})") from None
    return handle, csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)


def read_glue_split(path: str | Path, task: TaskSpec, split: str) -> TextExamples:
    """Read one GLUE split of ``task``; the test split has no labels."""
    path = Path(path)
    text_columns = task.text_columns_for(split)
    want_labels = split != "test"
    handle, rows = _open_rows(path)
    with handle:
        try:
            header = next(rows)
        except StopIteration:
            raise DataError(f"{path}: file is empty") from None
        except UnicodeDecodeError:
            raise DataError(f"{path}: not UTF-8 text") from None
        positions = _column_positions(path, header, text_columns, task.label_column, want_labels)
        columns: list[list[str]] = [[] for _ in text_columns]
        labels: list[int] = []
        label_ids = {value: i for i, value in enumerate(task.label_values)}
        try:
            for row in rows:
                line = rows.line_num
                if not row:
                    continue
                if len(row) != len(header):
                    raise DataError(
                        f"{path}:{line}: expected {len(header)} tab-separated fields, "
                        f"found {len(row)}"
                    )
                for column, position in zip(columns, positions[: len(text_columns)]):
                    column.append(row[position])
                if want_labels:
                    value = row[positions[-1]].strip()
                    if value not in label_ids:
                        allowed = ", ".join(task.label_values)
                        raise DataError(
                            f"{path}:{line}: unknown label {value!r} in column "
                            f"{task.label_column!r} (expected one of: {allowed})"
                        )
                    labels.append(label_ids[value])
        except UnicodeDecodeError:
            raise DataError(f"{path}: not UTF-8 text (near line {rows.line_num + 1})") from None
    if not columns[0]:
        raise DataError(f"{path}: no examples after the header")
    return TextExamples(columns, labels if want_labels else None, str(path))


def _column_positions(
    path: Path, header: list[str], text_columns: tuple[str, ...], label: str, want_label: bool
) -> list[int]:
    wanted = list(text_columns) + ([label] if want_label else [])
    header = [name.strip() for name in header]
    missing = [name for name in wanted if name not in header]
    if missing:
        raise DataError(
            f"{path}:1: missing column {missing[0]!r} in header (found: {', '.join(header)})"
        )
    return [header.index(name) for name in wanted]


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
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}:{number}: not valid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}:{number}: expected a JSON object")
        for column, name in zip(columns, input_names):
            if name not in record:
                raise DataError(f"{path}:{number}: missing field {name!r}")
            if not isinstance(record[name], str):
                raise DataError(f"{path}:{number}: field {name!r} must be a string")
            column.append(record[name])
    if not columns[0]:
        raise DataError(f"{path}: no examples found")
    return columns
