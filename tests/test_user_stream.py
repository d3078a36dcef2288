"""Users' files read in two passes (labels, then texts by chunks) give what reading whole gives."""

from __future__ import annotations

import csv
import random

import numpy as np
import pytest

import bertfit.data.user_stream as user_stream
from bertfit.data.encoding import encode_stream
from bertfit.data.readers import TextExamples
from bertfit.data.user_files import Columns, label_examples, read_user_file, user_task
from bertfit.data.user_stream import (
    FileExamples,
    read_user_examples,
    scan_label_ids,
    scan_task,
    scan_user_file,
)
from bertfit.errors import DataError
from bertfit.problem import REGRESSION, SINGLE_LABEL

from conftest import make_tiny_classifier, synthetic_pairs

PAIR = Columns("premise", "hypothesis", "verdict")


def write_rows(path, rows, header=("premise", "hypothesis", "verdict")):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def pair_rows(n: int, seed: int) -> list[list]:
    (first, second), labels = synthetic_pairs(n, seed)
    return [[a, b, y] for a, b, y in zip(first, second, labels)]


def tricky_rows(n: int, labels, seed: int = 0) -> list[list[str]]:
    """Pairs with commas, quotes and line breaks inside fields (so lines are not rows)."""
    rng = random.Random(seed)
    (first, second), _ = synthetic_pairs(n, seed)
    rows = []
    for i, (a, b) in enumerate(zip(first, second)):
        if i % 7 == 3:
            a = f'{a}, "quoted"\nsecond line'
        rows.append([a, b, rng.choice(labels)])
    return rows


def whole_and_streamed(path, columns=PAIR, problem_type=None, label_names=None):
    raw = read_user_file(path, columns)
    task, message = user_task(raw, columns, problem_type, label_names)
    scan = scan_user_file(path, columns)
    streamed_task, streamed_message = scan_task(scan, columns, problem_type, label_names)
    assert (streamed_task, streamed_message) == (task, message)
    return raw, scan, task


@pytest.mark.parametrize("labels", [("yes", "no", "maybe"), ("0", "1", "10", "2"), ("0.5", "3")])
def test_streamed_texts_and_labels_equal_reading_whole_across_chunks(tmp_path, labels):
    path = write_rows(tmp_path / "train.csv", tricky_rows(40, labels))
    raw, scan, task = whole_and_streamed(path)
    expected = label_examples(raw, task, "train")
    examples = FileExamples(path, PAIR, scan_label_ids(scan, task, "train"), str(path))
    assert examples.labels.tolist() == expected.labels and len(examples) == 40
    assert scan.lines.tolist() == raw.lines
    for rows in (1, 3, 7, 40, 100):
        chunks = list(examples.iter_chunks(rows))
        assert [len(chunk[0]) for chunk in chunks[:-1]] == [rows] * (len(chunks) - 1)
        joined = [sum((chunk[k] for chunk in chunks), []) for k in range(2)]
        assert joined == raw.columns
    assert examples.columns == raw.columns
    assert examples.select([5, 2]).columns == expected.select([5, 2]).columns


def test_task_decisions_match_reading_whole(tmp_path):
    many = write_rows(tmp_path / "many.csv", [["a", "b", str(i % 25)] for i in range(50)])
    assert whole_and_streamed(many)[2].problem_type == REGRESSION  # 25 distinct integers
    whole_and_streamed(many, problem_type=SINGLE_LABEL)
    small = write_rows(tmp_path / "small.csv", [["a", "b", str(i % 3)] for i in range(9)])
    assert whole_and_streamed(small)[2].problem_type == SINGLE_LABEL
    _, scan, task = whole_and_streamed(small, label_names=["0", "1"])
    with pytest.raises(
        DataError, match=r"small\.csv:4: column 'verdict': label '2' not among the given labels"
    ):
        scan_label_ids(scan, task, "train")
    one = write_rows(tmp_path / "one.csv", [["a", "b", "x"], ["c", "d", "x"]])
    with pytest.raises(DataError, match="only one label"):
        scan_task(scan_user_file(one, PAIR), PAIR)


def test_errors_name_file_and_line_far_into_the_file(tmp_path):
    rows = tricky_rows(60, ("yes", "no"))
    rows[45][1] = "   "
    path = write_rows(tmp_path / "late.csv", rows)
    line = read_line_of_row(path, 45)
    with pytest.raises(DataError, match=rf"late\.csv:{line}: empty text in column 'hypothesis'"):
        scan_user_file(path, PAIR)
    rows[45][1] = "fine"
    rows[50].pop()
    short = write_rows(tmp_path / "short.csv", rows)
    with pytest.raises(DataError, match=r"short\.csv:\d+: expected 3 fields"):
        scan_user_file(short, PAIR)
    with pytest.raises(DataError, match="no examples found"):
        scan_user_file(write_rows(tmp_path / "empty.csv", []), PAIR)


def read_line_of_row(path, row: int) -> int:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader)
        for index, _ in enumerate(reader):
            if index == row:
                return reader.line_num
    raise AssertionError("row not found")


def test_dev_labels_unseen_or_not_numbers_name_the_line(tmp_path):
    train = write_rows(tmp_path / "t.csv", [["a", "b", "yes"], ["c", "d", "no"]])
    task, _ = scan_task(scan_user_file(train, PAIR), PAIR)
    dev_rows = [["a", "b", "yes"]] * 30 + [["c", "d", "maybe"]]
    dev = write_rows(tmp_path / "d.csv", dev_rows)
    with pytest.raises(
        DataError, match=r"d\.csv:32: column 'verdict': label 'maybe' never seen in train"
    ):
        read_user_examples(dev, PAIR, task, "dev")
    regression, _ = scan_task(scan_user_file(train, PAIR), PAIR, problem_type=REGRESSION)
    with pytest.raises(
        DataError, match=r"t\.csv:2: column 'verdict': regression target 'yes' is not a number"
    ):
        read_user_examples(train, PAIR, regression, "train")


def test_too_many_distinct_labels_are_numbers_or_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(user_stream, "MAX_DISTINCT_LABELS", 5)
    numbers = write_rows(tmp_path / "n.csv", [["a", "b", f"{i / 4}"] for i in range(20)])
    scan = scan_user_file(numbers, PAIR)
    assert scan.names is None
    task, message = scan_task(scan, PAIR)
    assert task.problem_type == REGRESSION and "fractions" in message
    assert scan_label_ids(scan, task, "train").tolist() == [i / 4 for i in range(20)]
    words = write_rows(tmp_path / "w.csv", [["a", "b", f"class{i}"] for i in range(20)])
    with pytest.raises(DataError, match="more than 5 distinct labels"):
        scan_task(scan_user_file(words, PAIR), PAIR)


def test_a_file_changed_between_the_passes_is_an_error(tmp_path):
    path = write_rows(tmp_path / "t.csv", tricky_rows(10, ("yes", "no")))
    examples = read_user_examples(path, PAIR, scan_task(scan_user_file(path, PAIR), PAIR)[0], "x")
    write_rows(path, tricky_rows(8, ("yes", "no")))
    with pytest.raises(DataError, match="changed while it was being read"):
        list(examples.iter_chunks(3))


@pytest.mark.parametrize("stride", [None, 4])
def test_streamed_encoding_equals_encoding_whole(tmp_path, stride):
    classifier = make_tiny_classifier(tmp_path)
    (first, second), labels = synthetic_pairs(23, 4)
    first[5] = " ".join([first[5]] * 8)  # long enough for several windows
    path = write_rows(
        tmp_path / "t.csv", [[a, b, str(y)] for a, b, y in zip(first, second, labels)]
    )
    examples = read_user_examples(path, PAIR, scan_task(scan_user_file(path, PAIR), PAIR)[0], "x")
    in_memory = TextExamples([first, second], labels, "memory")
    if stride is None:
        expected, expected_owners = classifier.processor.encode([first, second]), None
    else:
        expected, expected_owners = classifier.processor.encode_windows([first, second], stride)
        assert len(expected) > len(first)
    for source in (examples, in_memory):
        for rows in (3, 100):
            store, owners = encode_stream(classifier.processor, source, stride, chunk_rows=rows)
            assert store == expected
            if stride is None:
                assert owners is None
            else:
                np.testing.assert_array_equal(owners, expected_owners)


def test_training_on_a_csv_streams_it_in_chunks_into_a_spilled_store(
    tmp_path, capsys, monkeypatch, tiny_model_dir
):
    import json

    import bertfit.data.encoding as encoding
    from bertfit.cli import main
    from bertfit.text.ragged import RaggedBuilder
    from bertfit.train.config import RunConfig
    from bertfit.train.run import load_task_data

    built = []

    def small_spilling_builder(spill_bytes):
        builder = RaggedBuilder(spill_bytes=200, spill_dir=str(tmp_path))
        built.append(builder)
        return builder

    monkeypatch.setattr(encoding, "CHUNK_ROWS", 7)
    monkeypatch.setattr(encoding, "RaggedBuilder", small_spilling_builder)
    train = write_rows(tmp_path / "train.csv", pair_rows(40, 1))
    dev = write_rows(tmp_path / "dev.csv", pair_rows(20, 2))
    config = RunConfig.from_dict(
        {
            "data": {
                "train_file": str(train),
                "dev_file": str(dev),
                "text_a": "premise",
                "text_b": "hypothesis",
                "label": "verdict",
            }
        }  # fmt: skip
    )
    _task, train_examples, dev_examples = load_task_data(config)
    assert isinstance(train_examples, FileExamples) and len(train_examples) == 40
    assert isinstance(dev_examples["dev"], FileExamples)
    run = tmp_path / "run"
    args = ["train", "--output", str(run), "--model", str(tiny_model_dir), "--quiet"]
    args += ["--max-seq-length", "32", "--text-a", "premise", "--text-b", "hypothesis"]
    args += ["--label", "verdict", "--train", str(train), "--dev", str(dev), "--max-steps", "3"]
    assert main(args) == 0
    assert "40 train / 20 dev examples" in capsys.readouterr().out
    assert len(built) == 2 and all(builder.spilled for builder in built)
    record = json.loads((run / "history.jsonl").read_text().splitlines()[-1])
    assert 0.0 <= record["dev_accuracy"] <= 1.0
