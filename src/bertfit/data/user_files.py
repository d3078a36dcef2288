"""Users' own labelled data: CSV, TSV, JSON lines or Parquet files with named columns.

The columns holding the texts and the label are given by name. Label names come from the
training file (or are given), and whether the task is classification or regression is given
or inferred from the labels. The result is an ordinary :class:`TaskSpec` plus
:class:`TextExamples`, so everything downstream treats the data like a GLUE task.

A text file's rows are named by line number (``train.csv:12``); a Parquet file's, which has no
lines, by row number counted from 1 (``train.parquet, row 12``). Parquet is read with pyarrow
a batch of rows at a time and only the named columns.
"""

from __future__ import annotations

import csv
import decimal
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bertfit.data.readers import TextExamples, iter_json_objects, open_text
from bertfit.data.tasks import TaskSpec
from bertfit.errors import ConfigError, DataError
from bertfit.problem import MULTI_LABEL, REGRESSION, SINGLE_LABEL, ProblemType, task_type_of

#: A multi-label task's metrics; the first (micro F1) picks the best model.
MULTI_LABEL_METRICS = ("micro_f1", "macro_f1", "subset_accuracy")

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "tsv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
#: Rows of a Parquet file turned into Python values at once. pyarrow itself holds the named
#: columns of one row group: a million short pairs written as one group peaked at 260 MiB.
PARQUET_BATCH_ROWS = 65536


#: What separates label names in one CSV/TSV field of a multi-label column, unless told.
DEFAULT_LABEL_SEPARATOR = ";"


@dataclass(frozen=True)
class Columns:
    """Which fields hold the texts (one or two) and the labels.

    The labels are one column (``label``): a class name, a number, or for multi-label data a
    list of names (a JSON array in JSON lines, names joined by ``separator`` in CSV/TSV).
    Multi-label data may instead name several 0/1 columns (``label_columns``), one per label.
    """

    text_a: str
    text_b: str | None
    label: str
    label_columns: tuple[str, ...] = ()
    separator: str = DEFAULT_LABEL_SEPARATOR

    @property
    def texts(self) -> tuple[str, ...]:
        return (self.text_a,) if self.text_b is None else (self.text_a, self.text_b)


def file_format(path: Path) -> str:
    """``csv``, ``tsv``, ``jsonl`` or ``parquet`` from the file's suffix."""
    try:
        return FORMATS[Path(path).suffix.lower()]
    except KeyError:
        raise DataError(
            f"{path}: unknown file type {Path(path).suffix!r}; use .csv, .tsv, .jsonl or .parquet"
        ) from None


def row_location(source: str | Path, number: int) -> str:
    """Where a row is, for messages: ``FILE:LINE``, or ``FILE, row N`` in a Parquet file."""
    if FORMATS.get(Path(source).suffix.lower()) == "parquet":
        return f"{source}, row {number}"
    return f"{source}:{number}"


def iter_records(
    path: str | Path, fields: Sequence[str] | None = None, keep_lists: bool = False
) -> Iterator[tuple[int, dict[str, object]]]:
    """(position, record) for every record of a CSV/TSV (with header), JSON lines or Parquet
    file: the line number in a text file, the row number (from 1) in a Parquet file.

    Text files give every field as a string: JSON values that are not strings arrive as their
    JSON text, except arrays with ``keep_lists`` (label lists), which stay Python lists. A
    Parquet file gives only ``fields`` (all columns when None; one it lacks is an error naming
    it) as the values its columns hold: strings, numbers, booleans, lists, ``None`` for null.
    Streams the file: memory does not grow with its size (with a Parquet file's row groups,
    which its writer chose, at most).
    """
    path = Path(path)
    kind = file_format(path)
    if kind == "parquet":
        yield from _parquet_records(path, fields)
        return
    with open_text(path) as handle:
        try:
            if kind == "jsonl":
                yield from _json_records(path, handle, keep_lists)
            else:
                yield from _table_records(path, handle, kind)
        except UnicodeDecodeError:
            raise DataError(f"{path}: not UTF-8 text") from None


def _table_records(path: Path, handle, kind: str) -> Iterator[tuple[int, dict[str, str]]]:
    if kind == "csv":
        reader = csv.reader(handle)
    else:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(reader, None)
    if header is None:
        raise DataError(f"{path}: file is empty")
    header = [name.strip() for name in header]
    for row in reader:
        if not row:
            continue
        if len(row) != len(header):
            raise DataError(
                f"{path}:{reader.line_num}: expected {len(header)} fields as in the header, "
                f"found {len(row)}"
            )
        yield reader.line_num, dict(zip(header, row))


def _json_records(path: Path, handle, keep_lists: bool) -> Iterator[tuple[int, dict[str, str]]]:
    for number, record in iter_json_objects(path, handle):
        # Non-string values (numeric labels) are kept as their JSON text.
        yield (
            number,
            {
                k: v
                if isinstance(v, str) or (keep_lists and isinstance(v, list))
                else json.dumps(v)
                for k, v in record.items()
            },
        )


def _parquet_records(
    path: Path, fields: Sequence[str] | None
) -> Iterator[tuple[int, dict[str, object]]]:
    try:  # pyarrow: only for a Parquet file; a --no-deps (torch-free) install may lack it
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(f"{path}: reading Parquet needs pyarrow: pip install pyarrow") from None
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        parquet = pq.ParquetFile(path)
        names = parquet.schema_arrow.names
        wanted = list(names if fields is None else dict.fromkeys(fields))
        for name in wanted:
            if name not in names:
                raise DataError(
                    f"{path}: missing column {name!r} (found: {', '.join(names) or 'none'})"
                )
        number = 0
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=wanted):
            columns = [batch.column(name).to_pylist() for name in wanted]
            for values in zip(*columns):
                number += 1
                yield number, dict(zip(wanted, values))
    except (pa.ArrowException, OSError) as error:
        raise DataError(f"{path}: cannot read it as Parquet ({error})") from None


@dataclass
class RawExamples:
    """Texts and label strings as read, before labels are mapped to ids."""

    columns: list[list[str]]
    labels: list[str]
    lines: list[int]
    source: str
    label_column: str = "label"


def read_user_file(path: str | Path, columns: Columns) -> RawExamples:
    """Read the named text and label fields; empty texts and missing fields are errors."""
    path = Path(path)
    texts: list[list[str]] = [[] for _ in columns.texts]
    labels: list[str] = []
    lines: list[int] = []
    for line, record in iter_records(path, (*columns.texts, columns.label)):
        for column, name in zip(texts, columns.texts):
            column.append(_field(path, line, record, name, text=True))
        labels.append(_field(path, line, record, columns.label, text=False))
        lines.append(line)
    if not lines:
        raise DataError(f"{path}: no examples found")
    return RawExamples(texts, labels, lines, str(path), columns.label)


def _field(path: Path, line: int, record: dict, name: str, text: bool) -> str:
    where = row_location(path, line)
    kind = "text" if text else "label"
    if name not in record:
        found = ", ".join(record) or "none"
        raise DataError(f"{where}: missing column {name!r} (found: {found})")
    value = record[name]
    if value is None:  # a Parquet null; text files have none
        raise DataError(f"{where}: null {kind} in column {name!r}")
    if not isinstance(value, str):  # a Parquet value: labels may be numbers, texts may not
        value = None if text else _label_text(value)
        if value is None:
            found = f"{type(record[name]).__name__} {record[name]!r}"
            wanted = "a string" if text else "a string, number or boolean"
            raise DataError(f"{where}: {kind} in column {name!r} is {found}, not {wanted}")
    value = value.strip() if not text else value
    if not value.strip():
        raise DataError(f"{where}: empty {kind} in column {name!r}")
    return value


def _label_text(value: object) -> str | None:
    """A typed label as the text a JSON lines file would hold (``1``, ``0.5``, ``true``)."""
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    return None


def infer_problem_type(labels: list[str]) -> tuple[ProblemType, str]:
    """The problem type that labels look like, and a sentence saying why.

    Numbers with a fractional part, or more than 20 distinct integers, mean regression;
    anything else is taken as class names (single-label classification).
    """
    numbers = [_as_number(label) for label in labels]
    if any(value is None for value in numbers):
        return SINGLE_LABEL, "labels are not all numbers: classification"
    distinct = set(numbers)
    if any(not float(value).is_integer() for value in distinct):
        return REGRESSION, "labels are numbers with fractions: regression"
    if len(distinct) > 20:
        return REGRESSION, f"labels are {len(distinct)} distinct numbers: regression"
    return SINGLE_LABEL, f"labels are {len(distinct)} distinct integers: classification"


def _as_number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def user_task(
    raw_train: RawExamples,
    columns: Columns,
    problem_type: ProblemType | None = None,
    label_names: list[str] | None = None,
) -> tuple[TaskSpec, str]:
    """A :class:`TaskSpec` for the user's data, and a message saying how its kind was chosen
    (``problem_type`` None: inferred from the labels)."""
    if problem_type is None:
        problem_type, message = infer_problem_type(raw_train.labels)
    else:
        message = f"{task_type_of(problem_type)} (as asked)"
    if problem_type == REGRESSION:
        return build_user_task(columns, REGRESSION, ()), message
    names = tuple(label_names) if label_names else tuple(_sorted_labels(raw_train.labels))
    if len(names) < 2:
        raise DataError(f"{raw_train.source}: only one label ({names[0]!r}) in the data")
    return build_user_task(columns, problem_type, names), message


def build_user_task(
    columns: Columns, problem_type: ProblemType, label_names: Sequence[str]
) -> TaskSpec:
    """The :class:`TaskSpec` of user data whose problem type and labels are known."""
    if problem_type == REGRESSION:
        values: tuple[str, ...] = ()
        names: tuple[str, ...] = ("score",)
        metrics: tuple[str, ...] = ("pearson", "spearman")
    elif problem_type == MULTI_LABEL:
        values = names = tuple(label_names)
        metrics = MULTI_LABEL_METRICS
    else:
        values = names = tuple(label_names)
        metrics = ("accuracy", "f1") if len(values) == 2 else ("accuracy",)
    return TaskSpec(
        name="custom",
        glue_dir="",
        text_columns=columns.texts,
        label_column=columns.label_columns[0] if columns.label_columns else columns.label,
        label_values=values,
        label_names=names,
        metrics=metrics,
        input_names=columns.texts,
        problem_type=problem_type,
    )


def _sorted_labels(labels: list[str]) -> list[str]:
    """Distinct labels, numerically ordered when they are all numbers (0 before 1 before 10)."""
    distinct = set(labels)
    if all(_as_number(label) is not None for label in distinct):
        return sorted(distinct, key=lambda label: float(label))
    return sorted(distinct)


def label_examples(raw: RawExamples, task: TaskSpec, split: str) -> TextExamples:
    """Map label strings to class ids (or floats); a label unknown to the task is an error."""
    path = raw.source
    if task.problem_type == REGRESSION:
        labels: list = []
        for line, text in zip(raw.lines, raw.labels):
            value = _as_number(text)
            if value is None:
                raise DataError(
                    f"{row_location(path, line)}: column {raw.label_column!r}: regression "
                    f"target {text!r} is not a number"
                )
            labels.append(value)
        return TextExamples(raw.columns, labels, path)
    ids = {value: i for i, value in enumerate(task.label_values)}
    labels = []
    for line, text in zip(raw.lines, raw.labels):
        if text not in ids:
            where = "never seen in train" if split != "train" else "not among the given labels"
            raise DataError(
                f"{row_location(path, line)}: column {raw.label_column!r}: label {text!r} "
                f"{where} ({', '.join(ids)})"
            )
        labels.append(ids[text])
    return TextExamples(raw.columns, labels, path)
