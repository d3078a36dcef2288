"""Users' own CSV / TSV / JSON lines files: columns by name, labels from the data, clear errors."""

from __future__ import annotations

import json

import pytest

from bertfit.data.user_files import (
    Columns,
    infer_problem_type,
    label_examples,
    read_user_file,
    user_task,
)
from bertfit.errors import DataError
from bertfit.problem import REGRESSION, SINGLE_LABEL

PAIR = Columns("premise", "hypothesis", "verdict")


def _csv(path, rows, header="premise,hypothesis,verdict"):
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_csv_with_quotes_and_commas_and_labels_from_data(tmp_path):
    path = _csv(tmp_path / "train.csv", ['"A cat, sat.",A cat sat.,yes', "It rained.,Sunny.,no"])
    raw = read_user_file(path, PAIR)
    assert raw.columns == [["A cat, sat.", "It rained."], ["A cat sat.", "Sunny."]]
    task, message = user_task(raw, PAIR)
    assert "classification" in message
    assert task.label_names == ("no", "yes") and task.metrics == ("accuracy", "f1")
    assert label_examples(raw, task, "train").labels == [1, 0]


def test_tsv_and_jsonl_single_text(tmp_path):
    columns = Columns("text", None, "label")
    tsv = tmp_path / "d.tsv"
    tsv.write_text('text\tlabel\nsaid "hi"\tpos\nbad\tneg\n', encoding="utf-8")
    assert read_user_file(tsv, columns).columns == [['said "hi"', "bad"]]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text(
        json.dumps({"text": "good", "label": 1}) + "\n\n" + '{"text": "x", "label": 0}\n'
    )
    raw = read_user_file(jsonl, columns)
    assert raw.labels == ["1", "0"] and raw.lines == [1, 3]
    task, _ = user_task(raw, columns)
    assert task.label_names == ("0", "1") and task.input_names == ("text",)


def test_regression_is_inferred_or_forced(tmp_path):
    raw = read_user_file(_csv(tmp_path / "r.csv", ["a,b,0.5", "c,d,4.25", "e,f,3"]), PAIR)
    task, message = user_task(raw, PAIR)
    assert task.problem_type == REGRESSION and "regression" in message
    assert label_examples(raw, task, "train").labels == [0.5, 4.25, 3.0]
    forced, message = user_task(raw, PAIR, problem_type=SINGLE_LABEL)
    assert forced.problem_type == SINGLE_LABEL and forced.label_names == ("0.5", "3", "4.25")
    assert message == "classification (as asked)"
    assert infer_problem_type(["0", "1", "1"])[0] == SINGLE_LABEL
    assert infer_problem_type([str(i) for i in range(30)])[0] == REGRESSION


def test_errors_name_file_and_line(tmp_path):
    missing = _csv(tmp_path / "m.csv", ["a,b,yes", "c,d,no"], header="premise,hyp,verdict")
    with pytest.raises(DataError, match=r"m\.csv:2: missing column 'hypothesis'"):
        read_user_file(missing, PAIR)
    empty = _csv(tmp_path / "e.csv", ["a,b,yes", "c,   ,no"])
    with pytest.raises(DataError, match=r"e\.csv:3: empty text in column 'hypothesis'"):
        read_user_file(empty, PAIR)
    ragged = _csv(tmp_path / "r.csv", ["a,b,yes", "c,d"])
    with pytest.raises(DataError, match=r"r\.csv:3: expected 3 fields"):
        read_user_file(ragged, PAIR)
    broken = tmp_path / "b.jsonl"
    broken.write_text('{"premise": "a"\n')
    with pytest.raises(DataError, match=r"b\.jsonl:1: not valid JSON"):
        read_user_file(broken, PAIR)
    with pytest.raises(DataError, match="unknown file type"):
        read_user_file(tmp_path / "data.xlsx", PAIR)


def test_dev_label_never_seen_in_train(tmp_path):
    train = read_user_file(_csv(tmp_path / "t.csv", ["a,b,yes", "c,d,no"]), PAIR)
    task, _ = user_task(train, PAIR)
    dev = read_user_file(_csv(tmp_path / "d.csv", ["a,b,yes", "c,d,maybe"]), PAIR)
    with pytest.raises(
        DataError, match=r"d\.csv:3: column 'verdict': label 'maybe' never seen in train"
    ):
        label_examples(dev, task, "dev")


def test_non_numeric_regression_target_in_dev(tmp_path):
    train = read_user_file(_csv(tmp_path / "t.csv", ["a,b,0.5", "c,d,1.5"]), PAIR)
    task, _ = user_task(train, PAIR, problem_type=REGRESSION)
    dev = read_user_file(_csv(tmp_path / "d.csv", ["a,b,high"]), PAIR)
    with pytest.raises(
        DataError, match=r"d\.csv:2: column 'verdict': regression target 'high' is not a number"
    ):
        label_examples(dev, task, "dev")
