"""Users' own labelled data: CSV, TSV or JSON lines files with named columns.

The columns holding the texts and the label are given by name. Label names come from the
training file (or are given), and whether the task is classification or regression is given
or inferred from the labels. The result is an ordinary :class:`TaskSpec` plus
:class:`TextExamples`, so everything downstream treats the data like a GLUE task.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bertfit.data.readers import TextExamples, iter_json_objects, open_text
from bertfit.data.tasks import TaskSpec
from bertfit.errors import DataError
from bertfit.problem import MULTI_LABEL, REGRESSION, SINGLE_LABEL, ProblemType, task_type_of

#: A multi-label task's metrics; the first (micro F1) picks the best model.
MULTI_LABEL_METRICS = ("micro_f1", "macro_f1", "subset_accuracy")

FORMATS = {".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}


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
    """``csv``, ``tsv`` or ``jsonl`` from the file's suffix."""
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise DataError(
            f"{path}: unknown file type {path.suffix!r}; use .csv, .tsv or .jsonl"
        ) from None


def iter_records(
    path: str | Path, keep_lists: bool = False
) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, record) for every record of a CSV/TSV (with header) or JSON lines file.

    Streams the file: memory does not grow with its size. JSON values that are not strings
    arrive as their JSON text, except arrays with ``keep_lists`` (label lists), which stay
    Python lists.
    """
    path = Path(path)
    kind = file_format(path)
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


@dataclass
class RawExamples:
    """Texts and label strings as read, before labels are mapped to ids."""

    columns: list[list[str]]
    labels: list[str]
    lines: list[int]
    source: str


def read_user_file(path: str | Path, columns: Columns) -> RawExamples:
    """Read the named text and label fields; empty texts and missing fields are errors."""
    path = Path(path)
    texts: list[list[str]] = [[] for _ in columns.texts]
    labels: list[str] = []
    lines: list[int] = []
    for line, record in iter_records(path):
        for column, name in zip(texts, columns.texts):
            column.append(_field(path, line, record, name, text=True))
        labels.append(_field(path, line, record, columns.label, text=False))
        lines.append(line)
    if not lines:
        raise DataError(f"{path}: no examples found")
    return RawExamples(texts, labels, lines, str(path))


def _field(path: Path, line: int, record: dict, name: str, text: bool) -> str:
    if name not in record:
        found = ", ".join(record) or "none"
        raise DataError(f"{path}:{line}: missing column {name!r} (found: {found})")
    if not isinstance(record[name], str):  # a JSON array where a text belongs
        raise DataError(f"{path}:{line}: column {name!r} must hold text, not a list")
    value = record[name].strip() if not text else record[name]
    if not value.strip():
        kind = "text" if text else "label"
        raise DataError(f"{path}:{line}: empty {kind} in column {name!r}")
    return value


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
                raise DataError(f"{path}:{line}: regression target {text!r} is not a number")
            labels.append(value)
        return TextExamples(raw.columns, labels, path)
    ids = {value: i for i, value in enumerate(task.label_values)}
    labels = []
    for line, text in zip(raw.lines, raw.labels):
        if text not in ids:
            where = "never seen in train" if split != "train" else "not among the given labels"
            raise DataError(f"{path}:{line}: label {text!r} {where} ({', '.join(ids)})")
        labels.append(ids[text])
    return TextExamples(raw.columns, labels, path)
