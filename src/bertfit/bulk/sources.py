"""Input of ``bertfit predict --output``: files, folders or globs of shards, read in chunks.

Every reader yields :class:`Chunk` objects of at most ``chunk_rows`` rows, one file at a time, so
memory holds one chunk of strings whatever the input's size. Parquet is read with pyarrow's
streaming ``ParquetFile.iter_batches``. CSV, TSV and JSON lines are read with Python's ``csv`` and
``json`` line by line instead of pyarrow's CSV/JSON readers: those convert a block of rows at a
time and fail the whole block on one bad byte or one value of another type, without the line;
here a bad row (not UTF-8, wrong field count, not JSON) is found with its line and column, and
``--on-error skip`` can set that one row aside. Parsing is a small share of the work next to the
model (``bench/bulk_predict.py`` prints both rates).

A problem that concerns one row is not raised here: it is recorded in :attr:`Chunk.problems` and
the engine decides (stop, or reject the row). Problems with the input as a whole (no files, an
unknown suffix, a header without the text columns) raise :class:`~bertfit.errors.DataError`.
"""

from __future__ import annotations

import csv
import glob
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bertfit.errors import ConfigError, DataError

# Real rows are short, but csv's default field limit (128 KiB) is an arbitrary cap.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))

INPUT_FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "tsv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
}
_GLOB_CHARACTERS = set("*?[")


def input_format(path: Path) -> str:
    """``parquet``, ``csv``, ``tsv`` or ``jsonl`` from the file's suffix."""
    try:
        return INPUT_FORMATS[path.suffix.lower()]
    except KeyError:
        known = ", ".join(sorted(INPUT_FORMATS))
        raise DataError(f"{path}: unknown input type {path.suffix!r} (use {known})") from None


def input_files(spec: str | Path) -> list[Path]:
    """The files of an input: one file, a folder (its files of known types, at any depth), or
    a glob; sorted by path so that every run reads them in the same order.

    In a folder, names starting with ``.`` or ``_`` (``_SUCCESS``, ``.crc`` files that Spark
    and Hadoop leave beside their shards) are skipped.
    """
    text = str(spec)
    path = Path(text).expanduser()
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and p.suffix.lower() in INPUT_FORMATS
            and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
        )
        where = f"{path}: no input files (.csv, .tsv, .jsonl, .parquet) in this folder"
    elif _GLOB_CHARACTERS & set(text) and not path.exists():
        files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        where = f"{text}: no files match this pattern"
    elif path.is_file():
        files = [path]
        where = ""
    else:
        raise DataError(f"{path}: input not found")
    if not files:
        raise DataError(where)
    for file in files:
        input_format(file)
    return files


@dataclass
class Layout:
    """Which columns to read: the text columns in segment order and the columns copied through
    (see :func:`resolve_keep`)."""

    texts: tuple[str, ...]
    keep: tuple[str, ...] = ()
    #: Whether ``keep`` was named by the user: then a file without one of them is an error;
    #: otherwise (every non-text column of the first file) such a file's values are null.
    keep_given: bool = False
    #: The model's input names: a headerless TSV file with exactly this many fields per line is
    #: read by position, as ``bertfit predict --input`` always has.
    positional: tuple[str, ...] = ()


@dataclass
class Chunk:
    """At most ``chunk_rows`` consecutive rows of one input file.

    ``texts[c][i]`` is row ``i``'s value of text column ``c`` as read (a string, or anything
    else for the engine to reject); ``kept`` holds the copied columns as an Arrow table;
    ``numbers[i]`` is the row's line (text files) or 1-based row (Parquet) for messages, and
    ``problems`` maps a row index to ``(column or None, reason)`` for rows that could not be read.
    """

    file: Path
    unit: str  # "line" or "row": what ``numbers`` count
    numbers: list[int]
    texts: list[list]
    kept: pa.Table
    problems: dict[int, tuple[str | None, str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.numbers)

    def where(self, index: int, column: str | None) -> str:
        """``FILE: line N, column 'x'``: where row ``index``'s problem is, for messages."""
        place = f"{self.file}: {self.unit} {self.numbers[index]}"
        return place if column is None else f"{place}, column {column!r}"


MISSING = object()  # a text column absent from a row (distinct from a JSON null)


def read_chunks(files: Sequence[Path], layout: Layout, chunk_rows: int) -> Iterator[Chunk]:
    """Every row of ``files`` in order, in chunks of at most ``chunk_rows`` rows (a chunk never
    spans two files), each with the text columns and the kept columns of ``layout``."""
    if chunk_rows < 1:
        raise ConfigError(f"chunk rows must be positive, got {chunk_rows}")
    for file in files:
        yield from _READERS[input_format(file)](file, layout, chunk_rows)


def resolve_keep(files: Sequence[Path], layout: Layout, keep: Sequence[str] | None) -> Layout:
    """``layout`` with its kept columns: ``keep`` as given (each must be a column of the first
    file), or every non-text column of the first file."""
    names = file_columns(files[0], layout)
    if keep is None:
        chosen = tuple(name for name in names if name not in layout.texts)
        return Layout(layout.texts, chosen, False, layout.positional)
    for name in keep:
        if name not in names:
            found = ", ".join(names) or "none"
            raise DataError(f"{files[0]}: no column {name!r} to keep (found: {found})")
    return Layout(layout.texts, tuple(keep), True, layout.positional)


def file_columns(path: Path, layout: Layout) -> list[str]:
    """The column names of one input file (its header, schema or first JSON object)."""
    kind = input_format(path)
    if kind == "parquet":
        return list(_parquet_file(path).schema_arrow.names)
    if kind == "jsonl":
        with _open_text(path) as handle:
            for line in handle:
                if line.strip():
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        return []
                    return list(record) if isinstance(record, dict) else []
        return []
    with _open_text(path) as handle:
        header = next(_csv_reader(handle, kind), None)
    return _header_names(path, header or [], layout)[0]


def count_rows(files: Sequence[Path]) -> int:
    """About how many rows the input has, for the progress bar's ETA: exact for Parquet (its
    footer says), the number of lines for text files (cheap: bytes counted, not parsed)."""
    total = 0
    for path in files:
        if input_format(path) == "parquet":
            total += _parquet_file(path).metadata.num_rows
            continue
        with open(path, "rb") as handle:
            total += sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
    return total


# -- text files ---------------------------------------------------------------------------------


def _open_text(path: Path):
    # surrogateescape: a byte that is not UTF-8 becomes a lone surrogate in its field instead
    # of failing the whole read, so the row and column can be named (see _not_utf8).
    try:
        return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror})") from None


def _not_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _csv_reader(handle, kind: str):
    if kind == "csv":
        return csv.reader(handle)
    # TSV as GLUE writes it and as `bertfit predict` has always read it: no quoting.
    return csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)


def _header_names(path: Path, first: list[str], layout: Layout) -> tuple[list[str], bool]:
    """The column names of a CSV/TSV file and whether its first row is a header.

    A TSV first row that names the text columns is a header; one with exactly as many fields
    as the model has inputs, and not naming them, is data read by position.
    """
    names = [name.strip() for name in first]
    if path.suffix.lower() in (".tsv", ".txt") and layout.positional:
        names_texts = all(name in names for name in layout.texts)
        if not names_texts and len(names) == len(layout.positional):
            return list(layout.positional), False
    return names, True


class _Rows:
    """Grows one chunk of a text file row by row."""

    def __init__(self, path: Path, layout: Layout) -> None:
        self.path, self.layout = path, layout
        self.reset()

    def reset(self) -> None:
        self.numbers: list[int] = []
        self.texts: list[list] = [[] for _ in self.layout.texts]
        self.kept: dict[str, list] = {name: [] for name in self.layout.keep}
        self.problems: dict[int, tuple[str | None, str]] = {}

    def add(self, number: int, record: dict | None, problem=None) -> None:
        index = len(self.numbers)
        self.numbers.append(number)
        if record is None:
            record = {}
            self.problems[index] = problem
        for column, name in zip(self.texts, self.layout.texts):
            column.append(record.get(name, MISSING))
        for name, column in self.kept.items():
            column.append(record.get(name))

    def __len__(self) -> int:
        return len(self.numbers)

    def chunk(self) -> Chunk:
        kept = _table(self.kept, self.layout.keep)
        chunk = Chunk(self.path, "line", self.numbers, self.texts, kept, self.problems)
        self.reset()
        return chunk


def _table(columns: dict[str, list], names: Sequence[str]) -> pa.Table:
    """An Arrow table of copied columns; a column of mixed JSON types is kept as JSON text."""
    arrays = []
    for name in names:
        values = columns.get(name, [])
        try:
            arrays.append(pa.array(values))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            texts = [
                None if v is None else v if isinstance(v, str) else json.dumps(v) for v in values
            ]
            arrays.append(pa.array(texts, type=pa.string()))
    return pa.table(arrays, names=list(names)) if names else pa.table({})


def _read_table_file(path: Path, layout: Layout, chunk_rows: int) -> Iterator[Chunk]:
    kind = input_format(path)
    with _open_text(path) as handle:
        reader = _csv_reader(handle, kind)
        first = next(reader, None)
        if first is None:
            return
        names, header = _header_names(path, first, layout)
        _check_kept(path, layout, names)
        missing = [name for name in layout.texts if name not in names]
        rows = _Rows(path, layout)
        pending = [] if header else [(1, first)]
        for number, fields in _numbered(pending, reader):
            if not fields:
                continue
            rows.add(number, *_table_record(names, fields, missing))
            if len(rows) == chunk_rows:
                yield rows.chunk()
        if len(rows):
            yield rows.chunk()


def _numbered(pending, reader):
    yield from pending
    for fields in reader:
        yield reader.line_num, fields


def _table_record(names: list[str], fields: list[str], missing: list[str]):
    if len(fields) != len(names):
        reason = f"expected {len(names)} fields as in the header, found {len(fields)}"
        return None, (None, reason)
    record = dict(zip(names, fields))
    for name, value in record.items():
        if _not_utf8(value):
            return None, (name, "not UTF-8 text")
    if missing:  # the text column is absent from the whole file: every row lacks it
        return None, (missing[0], "no such column in the file's header")
    return record, None


def _check_kept(path: Path, layout: Layout, names: Sequence[str]) -> None:
    """A file without a column the user asked to keep is an error; without one of the first
    file's other columns (the default), its rows keep null there."""
    absent = [name for name in layout.keep if name not in names]
    if absent and layout.keep_given:
        found = ", ".join(names) or "none"
        raise DataError(f"{path}: no column {absent[0]!r} to keep (found: {found})")


def _read_jsonl_file(path: Path, layout: Layout, chunk_rows: int) -> Iterator[Chunk]:
    rows = _Rows(path, layout)
    with _open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            rows.add(number, *_json_record(line))
            if len(rows) == chunk_rows:
                yield rows.chunk()
    if len(rows):
        yield rows.chunk()


def _json_record(line: str):
    if _not_utf8(line):
        return None, (None, "not UTF-8 text")
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        return None, (None, f"not valid JSON ({error.msg})")
    if not isinstance(record, dict):
        return None, (None, "expected a JSON object")
    return record, None


# -- Parquet ------------------------------------------------------------------------------------


def _parquet_file(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as error:
        raise DataError(f"{path}: not a readable Parquet file ({error})") from None


def _read_parquet_file(path: Path, layout: Layout, chunk_rows: int) -> Iterator[Chunk]:
    parquet = _parquet_file(path)
    names = parquet.schema_arrow.names
    _check_kept(path, layout, names)
    present = [name for name in layout.texts if name in names]
    missing = [name for name in layout.texts if name not in names]
    keep = [name for name in layout.keep if name in names]
    start = 0
    columns = list(dict.fromkeys([*present, *keep]))  # a text column may be kept too
    for batch in parquet.iter_batches(batch_size=chunk_rows, columns=columns):
        count = batch.num_rows
        problems = {}
        if missing:  # every row lacks the text column; the engine stops or rejects them all
            problems = {i: (missing[0], "no such column in the file") for i in range(count)}
        texts = [
            _strings(batch.column(name)) if name in present else [MISSING] * count
            for name in layout.texts
        ]
        kept = _parquet_kept(batch, layout.keep, keep)
        numbers = list(range(start + 1, start + count + 1))
        yield Chunk(path, "row", numbers, texts, kept, problems)
        start += count


def _parquet_kept(batch: pa.RecordBatch, wanted: Sequence[str], present: list[str]) -> pa.Table:
    arrays = [
        batch.column(name) if name in present else pa.nulls(batch.num_rows) for name in wanted
    ]
    return pa.table(arrays, names=list(wanted)) if wanted else pa.table({})


def _strings(column: pa.Array) -> list:
    """A column's values as Python objects; invalid UTF-8 in a string column stays bytes (and
    is rejected as not a string) instead of failing the chunk."""
    try:
        return column.to_pylist()
    except UnicodeDecodeError:
        raw = column.cast(pa.binary()).to_pylist()
        values = []
        for value in raw:
            try:
                values.append(None if value is None else value.decode("utf-8"))
            except UnicodeDecodeError:
                values.append(value)
        return values


_READERS = {
    "parquet": _read_parquet_file,
    "csv": _read_table_file,
    "tsv": _read_table_file,
    "jsonl": _read_jsonl_file,
}
