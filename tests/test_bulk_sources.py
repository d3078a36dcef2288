"""The bulk readers: every input format, shards, chunks of bounded size, bad rows located."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bertfit.bulk.sources import (
    MISSING,
    Layout,
    count_rows,
    input_files,
    read_chunks,
    resolve_keep,
)
from bertfit.errors import DataError

PAIR = Layout(("sentence1", "sentence2"), positional=("sentence1", "sentence2"))
ROWS = [
    {"id": 7, "sentence1": "the cat, it sat", "sentence2": 'a "dog"\nran', "src": "x"},
    {"id": 8, "sentence1": "red", "sentence2": "blue", "src": "y"},
    {"id": 9, "sentence1": "big mat", "sentence2": "small é", "src": "z"},
]


def _write_csv(path: Path, rows: list[dict]) -> Path:
    import csv

    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _write_parquet(path: Path, rows: list[dict], row_group_size: int = 2) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=row_group_size)
    return path


def _rows(files, layout=PAIR, chunk_rows=2, keep=None):
    layout = resolve_keep(files, layout, keep)
    out = []
    for chunk in read_chunks(files, layout, chunk_rows):
        assert len(chunk) <= chunk_rows
        kept = chunk.kept.to_pylist() if chunk.kept.num_columns else [{}] * len(chunk)
        for i in range(len(chunk)):
            texts = tuple(column[i] for column in chunk.texts)
            out.append((chunk.numbers[i], texts, kept[i], chunk.problems.get(i)))
    return out


@pytest.mark.parametrize("kind", ["csv", "jsonl", "parquet"])
def test_each_format_reads_texts_and_keeps_the_other_columns(kind, tmp_path):
    writer = {"csv": _write_csv, "jsonl": _write_jsonl, "parquet": _write_parquet}[kind]
    path = writer(tmp_path / f"in.{kind}", ROWS)
    rows = _rows([path])
    assert [texts for _, texts, _, _ in rows] == [(r["sentence1"], r["sentence2"]) for r in ROWS]
    expected_id = (lambda r: str(r["id"])) if kind == "csv" else (lambda r: r["id"])
    assert [kept for _, _, kept, _ in rows] == [
        {"id": expected_id(r), "src": r["src"]} for r in ROWS
    ]
    assert all(problem is None for *_, problem in rows)
    # --keep picks the columns, in its order
    assert [kept for _, _, kept, _ in _rows([path], keep=["src"])] == [
        {"src": r["src"]} for r in ROWS
    ]
    with pytest.raises(DataError, match=r"no column 'nope' to keep \(found: id, sentence1"):
        _rows([path], keep=["nope"])


def test_tsv_with_a_header_or_read_by_position(tmp_path):
    with_header = tmp_path / "h.tsv"
    with_header.write_text('id\tsentence2\tsentence1\n1\tb "q\tz\n2\td\tc\n', encoding="utf-8")
    rows = _rows([with_header])
    # No quoting in TSV (as GLUE writes it): a quote is text.
    assert [texts for _, texts, _, _ in rows] == [("z", 'b "q'), ("c", "d")]
    assert [kept for _, _, kept, _ in rows] == [{"id": "1"}, {"id": "2"}]
    headerless = tmp_path / "plain.tsv"
    headerless.write_text("\ufeffa cat\ta dog\n\nred\tblue\n", encoding="utf-8")
    rows = _rows([headerless])
    assert [(n, texts) for n, texts, _, _ in rows] == [
        (1, ("a cat", "a dog")),
        (3, ("red", "blue")),
    ]
    assert [kept for _, _, kept, _ in rows] == [{}, {}]


def test_a_folder_or_glob_of_shards_in_path_order(tmp_path):
    shards = tmp_path / "shards"
    (shards / "b").mkdir(parents=True)
    _write_parquet(shards / "b" / "part-1.parquet", ROWS[2:])
    _write_parquet(shards / "a.parquet", ROWS[:2])
    (shards / "_SUCCESS").write_text("")
    (shards / ".part-0.crc").write_text("x")
    (shards / "_tmp").mkdir()
    _write_parquet(shards / "_tmp" / "partial.parquet", ROWS)
    files = input_files(shards)
    assert files == [shards / "a.parquet", shards / "b" / "part-1.parquet"]
    assert [t for _, t, _, _ in _rows(files)] == [(r["sentence1"], r["sentence2"]) for r in ROWS]
    _write_jsonl(tmp_path / "x-2.jsonl", ROWS[1:])
    _write_jsonl(tmp_path / "x-1.jsonl", ROWS[:1])
    assert input_files(str(tmp_path / "x-*.jsonl")) == [
        tmp_path / "x-1.jsonl",
        tmp_path / "x-2.jsonl",
    ]
    with pytest.raises(DataError, match="no files match this pattern"):
        input_files(str(tmp_path / "y-*.jsonl"))
    with pytest.raises(DataError, match="input not found"):
        input_files(tmp_path / "missing.csv")
    (tmp_path / "in.xlsx").write_text("")
    with pytest.raises(DataError, match=r"unknown input type '.xlsx'"):
        input_files(tmp_path / "in.xlsx")
    assert count_rows(files) == 3


@pytest.mark.parametrize("kind", ["csv", "jsonl", "parquet"])
def test_chunks_hold_at_most_chunk_rows_and_cover_every_row_in_order(kind, tmp_path):
    rows = [{"id": i, "sentence1": f"a{i}", "sentence2": f"b{i}"} for i in range(23)]
    writer = {"csv": _write_csv, "jsonl": _write_jsonl, "parquet": _write_parquet}[kind]
    path = (
        writer(tmp_path / f"in.{kind}", rows)
        if kind != "parquet"
        else _write_parquet(tmp_path / "in.parquet", rows, row_group_size=10)
    )
    layout = resolve_keep([path], PAIR, None)
    chunks = list(read_chunks([path], layout, 4))
    assert all(1 <= len(chunk) <= 4 for chunk in chunks)
    assert [t for c in chunks for t in c.texts[0]] == [r["sentence1"] for r in rows]
    assert [n for c in chunks for n in c.numbers] == (
        list(range(1, 24)) if kind != "csv" else list(range(2, 25))  # CSV: lines after the header
    )


def test_the_reader_holds_one_chunk_not_the_file(tmp_path):
    """Reading a file in chunks of 100 rows and dropping each keeps a small fraction of the
    memory that holding the whole file's rows takes (Python allocations, by tracemalloc)."""
    rows = [
        {"sentence1": f"sentence number {i} " * 4, "sentence2": "x" * 40} for i in range(20_000)
    ]
    path = _write_jsonl(tmp_path / "big.jsonl", rows)
    layout = resolve_keep([path], PAIR, None)

    def peak(chunk_rows: int, hold: bool) -> int:
        held = []
        tracemalloc.start()
        for chunk in read_chunks([path], layout, chunk_rows):
            if hold:
                held.append(chunk)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    streamed, whole = peak(100, hold=False), peak(100, hold=True)
    assert streamed * 20 < whole


def test_rows_that_cannot_be_read_are_located_not_raised(tmp_path):
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_bytes(
        b'{"sentence1": "a", "sentence2": "b"}\n'
        b"not json\n"
        b"[1, 2]\n"
        b'{"sentence1": "caf\xe9", "sentence2": "b"}\n'
        b'{"sentence1": null, "sentence2": 3}\n'
        b'{"sentence2": "b"}\n'
    )
    rows = _rows([jsonl], chunk_rows=10)
    assert [(n, p) for n, _, _, p in rows] == [
        (1, None),
        (2, (None, "not valid JSON (Expecting value)")),
        (3, (None, "expected a JSON object")),
        (4, (None, "not UTF-8 text")),
        (5, None),  # null and 3 are read as they are; the engine rejects them
        (6, None),
    ]
    assert rows[4][1] == (None, 3) and rows[5][1] == (MISSING, "b")
    csv_path = tmp_path / "bad.csv"
    csv_path.write_bytes(b"sentence1,sentence2,id\na,b,1\nc,d\nx\xff,y,3\n")
    rows = _rows([csv_path], chunk_rows=10)
    assert [(n, p) for n, _, _, p in rows] == [
        (2, None),
        (3, (None, "expected 3 fields as in the header, found 2")),
        (4, ("sentence1", "not UTF-8 text")),
    ]


def test_a_file_without_a_text_column_marks_every_row(tmp_path):
    path = _write_parquet(tmp_path / "in.parquet", [{"id": 1, "text": "a"}, {"id": 2, "text": "b"}])
    layout = resolve_keep([path], PAIR, None)
    (chunk,) = read_chunks([path], layout, 10)
    assert chunk.problems == {
        0: ("sentence1", "no such column in the file"),
        1: ("sentence1", "no such column in the file"),
    }
    assert chunk.where(1, "sentence1") == f"{path}: row 2, column 'sentence1'"
