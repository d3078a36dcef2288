"""Output of ``bertfit predict --output``: part files, and the one output file made from them.

The output's suffix picks the format: ``.jsonl`` (JSON lines), ``.csv`` or ``.parquet``. Each
chunk of predictions is written as one part file in that format (Parquet through pyarrow's
writer); when every part is in, :func:`assemble` streams them, one part at a time, into a
temporary file beside the output and renames it into place. So the output path only ever holds
a complete output.

Lists (``probabilities``, ``logits``, a multi-label model's ``labels``) are JSON arrays in JSON
lines and list columns in Parquet; CSV has no lists, so numbers become one column per class
(``probability_<label>``, ``logit_<label>``) and label names one field joined by ``;``, as a
multi-label training file holds them.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bertfit.errors import ConfigError

OUTPUT_FORMATS = {
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
PART_SUFFIX = {"jsonl": ".jsonl", "csv": ".csv", "parquet": ".parquet"}
LIST_PREFIX = {"probabilities": "probability", "logits": "logit"}
#: Joins a multi-label row's chosen label names in a CSV field (training files' default).
LABEL_SEPARATOR = ";"


def output_format(path: Path) -> str:
    """``jsonl``, ``csv`` or ``parquet`` from the output's suffix."""
    try:
        return OUTPUT_FORMATS[path.suffix.lower()]
    except KeyError:
        raise ConfigError(
            f"{path}: unknown output type {path.suffix!r} (use .jsonl, .csv or .parquet)"
        ) from None


def flat_names(names: Sequence[str], label_names: Sequence[str]) -> list[str]:
    """The CSV header of a table with ``names``: list columns spread over one per class."""
    header = []
    for name in names:
        if name in LIST_PREFIX:
            header += [f"{LIST_PREFIX[name]}_{label}" for label in label_names]
        else:
            header.append(name)
    return header


def write_part(table: pa.Table, path: Path, kind: str) -> None:
    """Write one chunk's rows to ``path`` (CSV parts have no header: :func:`assemble` writes
    it once). The file is written under a temporary name and renamed when complete."""
    temporary = path.with_name(path.name + ".tmp")
    if kind == "parquet":
        pq.write_table(table, temporary)
    else:
        with open(temporary, "w", encoding="utf-8", newline="") as handle:
            if kind == "jsonl":
                _write_jsonl(table, handle)
            else:
                _write_csv_rows(table, handle)
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(temporary, path)


def _write_jsonl(table: pa.Table, handle) -> None:
    # default=str: values JSON has no type for (Parquet dates, decimals) are written as text.
    handle.writelines(json.dumps(row, default=str) + "\n" for row in table.to_pylist())


def _csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str)
    return str(value)


def _write_csv_rows(table: pa.Table, handle) -> None:
    writer = csv.writer(handle)
    for row in table.to_pylist():
        cells = []
        for name, value in row.items():
            if name in LIST_PREFIX and isinstance(value, list):
                cells += [_csv_cell(v) for v in value]
            elif name == "labels" and isinstance(value, list):
                cells.append(LABEL_SEPARATOR.join(value))
            else:
                cells.append(_csv_cell(value))
        writer.writerow(cells)


def assemble(parts: Sequence[Path], output: Path, kind: str, header: Sequence[str]) -> None:
    """Join the part files, in order, into ``output``, atomically (temporary file + rename).

    ``header`` is the CSV header. Parquet parts are read one at a time and written as row
    groups of one file whose schema unifies the parts' (a kept column that was all null in one
    chunk and text in another is text).
    """
    temporary = output.with_name(f".{output.name}.assembling")
    try:
        if kind == "parquet":
            _assemble_parquet(parts, temporary)
        else:
            with open(temporary, "wb") as handle:
                if kind == "csv":
                    line = _csv_line(header)
                    handle.write(line.encode("utf-8"))
                for part in parts:
                    with open(part, "rb") as source:
                        while block := source.read(1 << 20):
                            handle.write(block)
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, output)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _csv_line(cells: Sequence[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(list(cells))
    return buffer.getvalue()


def _assemble_parquet(parts: Sequence[Path], temporary: Path) -> None:
    schemas = [pq.read_schema(part) for part in parts]
    schema = pa.unify_schemas(schemas, promote_options="permissive")
    with pq.ParquetWriter(temporary, schema) as writer:
        for part in parts:
            table = pq.read_table(part)
            writer.write_table(table.select(schema.names).cast(schema))


def write_jsonl_lines(records: Sequence[dict], path: Path) -> None:
    """Write small records (rejected rows) as JSON lines, atomically."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(record) + "\n" for record in records)
    os.replace(temporary, path)
