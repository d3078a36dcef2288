"""``bertfit train --train FILE.parquet``: Parquet read as CSV is, same flags, same errors."""

from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import bertfit.data.user_files as user_files
from bertfit.data.encoding import encode_stream
from bertfit.data.user_files import Columns, label_examples, read_user_file, user_task
from bertfit.data.user_stream import (
    read_user_examples,
    scan_label_ids,
    scan_task,
    scan_user_file,
)
from bertfit.errors import ConfigError, DataError
from bertfit.problem import REGRESSION

from conftest import make_tiny_classifier, synthetic_pairs

PAIR = Columns("premise", "hypothesis", "verdict")


def write_csv(path, rows, header=("premise", "hypothesis", "verdict")):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_parquet(path, columns: dict, row_group_size: int | None = None):
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return path


def pair_columns(n: int, seed: int, labels=("no", "yes")) -> dict:
    (first, second), ys = synthetic_pairs(n, seed)
    first[3] = f'{first[3]}, "quoted"\nsecond line'  # CSV quoting, nothing special in Parquet
    return {"premise": first, "hypothesis": second, "verdict": [labels[y] for y in ys]}


def as_rows(columns: dict) -> list[list]:
    return [list(row) for row in zip(*columns.values())]


@pytest.mark.parametrize(
    "labels",
    [
        ("no", "yes"),  # strings
        (0, 1),  # int64 column: the labels "0" and "1", as in a CSV file
        (0.25, 3.5),  # float64: regression, as the CSV's "0.25" and "3.5"
    ],
)
def test_a_parquet_file_reads_as_the_same_csv_file(tmp_path, monkeypatch, labels):
    monkeypatch.setattr(user_files, "PARQUET_BATCH_ROWS", 7)  # many batches, rows across them
    columns = pair_columns(50, 1, labels)
    csv_path = write_csv(tmp_path / "t.csv", as_rows(columns))
    parquet_path = write_parquet(tmp_path / "t.parquet", columns, row_group_size=16)
    from_csv, from_parquet = read_user_file(csv_path, PAIR), read_user_file(parquet_path, PAIR)
    assert from_parquet.columns == from_csv.columns
    assert from_parquet.labels == from_csv.labels
    assert from_parquet.lines == list(range(1, 51))  # row numbers, not lines
    task, message = user_task(from_csv, PAIR)
    assert user_task(from_parquet, PAIR) == (task, message)
    assert scan_task(scan_user_file(parquet_path, PAIR), PAIR) == (task, message)
    scanned = scan_label_ids(scan_user_file(parquet_path, PAIR), task, "train")
    np.testing.assert_array_equal(scanned, label_examples(from_csv, task, "train").labels)
    streamed = read_user_examples(parquet_path, PAIR, task, "train")
    assert streamed.columns == from_csv.columns
    assert [len(chunk[0]) for chunk in streamed.iter_chunks(20)] == [20, 20, 10]


def test_booleans_and_decimals_label_as_json_lines_would(tmp_path):
    import decimal

    base = {"premise": ["a", "b", "c"], "hypothesis": ["d", "e", "f"]}
    flags = write_parquet(tmp_path / "b.parquet", {**base, "verdict": [True, False, True]})
    assert read_user_file(flags, PAIR).labels == ["true", "false", "true"]
    amounts = [decimal.Decimal("1.50"), decimal.Decimal("2.25"), decimal.Decimal("0.75")]
    money = write_parquet(tmp_path / "d.parquet", {**base, "verdict": amounts})
    task, message = user_task(read_user_file(money, PAIR), PAIR)
    assert task.problem_type == REGRESSION and "fractions" in message


def test_only_the_named_columns_are_read_and_one_text_is_enough(tmp_path):
    columns = {"id": list(range(4)), "text": ["a b", "c", "d e f", "g"], "y": ["x", "z"] * 2}
    columns["blob"] = [[1, 2], [3], [], [4]]  # a list column that is never read
    path = write_parquet(tmp_path / "single.parquet", columns)
    raw = read_user_file(path, Columns("text", None, "y"))
    assert raw.columns == [["a b", "c", "d e f", "g"]] and raw.labels == ["x", "z", "x", "z"]


def test_parquet_errors_name_the_file_row_and_column(tmp_path):
    columns = pair_columns(12, 2)
    good = write_parquet(tmp_path / "good.parquet", columns)
    with pytest.raises(DataError) as error:
        scan_user_file(good, Columns("premise", "claim", "verdict"))
    assert str(error.value) == (
        f"{good}: missing column 'claim' (found: premise, hypothesis, verdict)"
    )

    numbers = write_parquet(tmp_path / "n.parquet", {**columns, "hypothesis": list(range(12))})
    with pytest.raises(DataError) as error:
        scan_user_file(numbers, PAIR)
    assert str(error.value) == (
        f"{numbers}, row 1: text in column 'hypothesis' is int 0, not a string"
    )

    null_label = dict(columns, verdict=[*columns["verdict"][:8], None, *columns["verdict"][9:]])
    path = write_parquet(tmp_path / "l.parquet", null_label)
    with pytest.raises(DataError, match=r"l\.parquet, row 9: null label in column 'verdict'$"):
        scan_user_file(path, PAIR)

    null_text = dict(columns, premise=[None, *columns["premise"][1:]])
    path = write_parquet(tmp_path / "t.parquet", null_text)
    with pytest.raises(DataError, match=r"t\.parquet, row 1: null text in column 'premise'$"):
        read_user_file(path, PAIR)

    empty_text = dict(columns, premise=[*columns["premise"][:4], "  ", *columns["premise"][5:]])
    path = write_parquet(tmp_path / "e.parquet", empty_text)
    with pytest.raises(DataError, match=r"e\.parquet, row 5: empty text in column 'premise'$"):
        scan_user_file(path, PAIR)

    # A list column holds multi-label rows, whose labels are names, not numbers.
    lists = write_parquet(tmp_path / "x.parquet", dict(columns, verdict=[[1]] * 12))
    with pytest.raises(
        DataError, match=r"x\.parquet, row 1: column 'verdict': a label list holds 1, not a label"
    ):
        scan_user_file(lists, PAIR)

    none = write_parquet(
        tmp_path / "none.parquet", {name: pa.array([], pa.string()) for name in columns}
    )
    with pytest.raises(DataError, match=r"none\.parquet: no examples found"):
        scan_user_file(none, PAIR)


def test_dev_label_errors_name_the_row(tmp_path):
    train = write_parquet(tmp_path / "train.parquet", pair_columns(12, 3))
    task, _ = scan_task(scan_user_file(train, PAIR), PAIR)
    dev_columns = pair_columns(12, 4)
    dev_columns["verdict"][10] = "maybe"
    dev = write_parquet(tmp_path / "dev.parquet", dev_columns)
    unseen = r"dev\.parquet, row 11: column 'verdict': label 'maybe' never seen in train"
    with pytest.raises(DataError, match=unseen):
        read_user_examples(dev, PAIR, task, "dev")
    with pytest.raises(DataError, match=unseen):
        label_examples(read_user_file(dev, PAIR), task, "dev")
    regression, _ = scan_task(scan_user_file(train, PAIR), PAIR, problem_type=REGRESSION)
    not_number = r"train\.parquet, row 1: column 'verdict': regression target '\w+' is not"
    with pytest.raises(DataError, match=not_number):
        read_user_examples(train, PAIR, regression, "train")


def test_files_that_are_not_parquet_or_missing_say_so(tmp_path, monkeypatch):
    fake = tmp_path / "fake.parquet"
    fake.write_text("premise,hypothesis,verdict\na,b,c\n")
    with pytest.raises(DataError, match=r"fake\.parquet: cannot read it as Parquet \("):
        scan_user_file(fake, PAIR)
    with pytest.raises(DataError, match=r"gone\.parquet: file not found"):
        scan_user_file(tmp_path / "gone.parquet", PAIR)
    with pytest.raises(DataError, match=r"use \.csv, \.tsv, \.jsonl or \.parquet"):
        scan_user_file(tmp_path / "data.xlsx", PAIR)
    good = write_parquet(tmp_path / "good.parquet", pair_columns(4, 1))
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if pyarrow were not installed
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ConfigError, match=r"reading Parquet needs pyarrow: pip install pyarrow"):
        scan_user_file(good, PAIR)


def test_training_from_parquet_equals_training_from_the_same_csv(tmp_path, capsys, tiny_model_dir):
    from bertfit.cli import main
    from bertfit.train.config import RunConfig
    from bertfit.train.run import load_task_data

    train_columns, dev_columns = pair_columns(40, 5), pair_columns(16, 6)
    files = {
        "csv": (
            write_csv(tmp_path / "train.csv", as_rows(train_columns)),
            write_csv(tmp_path / "dev.csv", as_rows(dev_columns)),
        ),
        "parquet": (
            write_parquet(tmp_path / "train.parquet", train_columns),
            write_parquet(tmp_path / "dev.parquet", dev_columns),
        ),
    }
    processor = make_tiny_classifier(tmp_path).processor
    loaded, runs = {}, {}
    for kind, (train, dev) in files.items():
        data = {"train_file": str(train), "dev_file": str(dev), "text_a": "premise"}
        data |= {"text_b": "hypothesis", "label": "verdict"}
        task, train_examples, dev_examples = load_task_data(RunConfig.from_dict({"data": data}))
        stores = [
            encode_stream(processor, examples, None, chunk_rows=9)[0]
            for examples in (train_examples, dev_examples["dev"])
        ]
        labels = [train_examples.labels.tolist(), dev_examples["dev"].labels.tolist()]
        loaded[kind] = (task, stores, labels)
        runs[kind] = run = tmp_path / f"run-{kind}"
        args = ["train", "--output", str(run), "--model", str(tiny_model_dir), "--quiet"]
        args += ["--max-seq-length", "32", "--text-a", "premise", "--text-b", "hypothesis"]
        args += ["--label", "verdict", "--train", str(train), "--dev", str(dev)]
        assert main([*args, "--max-steps", "4", "--precision", "fp32"]) == 0
        assert "40 train / 16 dev examples" in capsys.readouterr().out
    assert [len(store) for store in loaded["csv"][1]] == [40, 16]
    assert loaded["parquet"] == loaded["csv"]  # the same task, the same store, the same labels
    configs = {k: json.loads((run / "config.json").read_text()) for k, run in runs.items()}
    assert configs["parquet"]["data"]["label_names"] == configs["csv"]["data"]["label_names"]
    assert configs["parquet"]["data"]["task_type"] == "classification"
    history = {k: (run / "history.jsonl").read_text().splitlines() for k, run in runs.items()}
    parquet_record, csv_record = (json.loads(history[k][-1]) for k in ("parquet", "csv"))
    assert "dev_accuracy" in csv_record
    for key, value in csv_record.items():
        if key.startswith("dev_"):
            assert parquet_record[key] == pytest.approx(value, abs=1e-6), key
    evaluations = {}
    for kind, run in runs.items():  # evaluate reads the run's dev file again, Parquet or CSV
        assert main(["evaluate", str(run), "--json"]) == 0
        evaluations[kind] = json.loads(capsys.readouterr().out)
    assert evaluations["parquet"] == pytest.approx(evaluations["csv"], abs=1e-6)
    assert evaluations["parquet"]["accuracy"] == pytest.approx(csv_record["dev_accuracy"])
