"""GLUE TSV reading and prediction input: real quirks and clear errors with line numbers."""

from __future__ import annotations

import pytest

from bertfit.data.readers import read_glue_split, read_prediction_input
from bertfit.data.tasks import MRPC, get_task
from bertfit.errors import ConfigError, DataError

from conftest import write_mrpc_split


def test_reads_mrpc_rows_with_bom_and_literal_quotes(tmp_path):
    path = write_mrpc_split(
        tmp_path / "train.tsv",
        [("1", 'He said " yes " .', "Yes , he said ."), ("0", "A b", "C d")],
    )
    examples = read_glue_split(path, MRPC, "train")
    assert examples.columns == [['He said " yes " .', "A b"], ["Yes , he said .", "C d"]]
    assert examples.labels == [1, 0]
    assert len(examples) == 2


def test_real_mrpc_counts(glue_dir):
    train = read_glue_split(glue_dir / "MRPC" / "train.tsv", MRPC, "train")
    dev = read_glue_split(glue_dir / "MRPC" / "dev.tsv", MRPC, "dev")
    test = read_glue_split(glue_dir / "MRPC" / "test.tsv", MRPC, "test")
    assert (len(train), sum(train.labels)) == (3668, 2474)
    assert (len(dev), sum(dev.labels)) == (408, 279)
    assert len(test) == 1725 and test.labels is None


def test_wrong_field_count_names_file_and_line(tmp_path):
    path = write_mrpc_split(tmp_path / "dev.tsv", [("1", "a", "b"), ("0", "c", "d")])
    text = path.read_text(encoding="utf-8").splitlines()
    text[2] = "0\t1\t2\tonly one sentence"
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"dev\.tsv:3: expected 5 tab-separated fields, found 4"):
        read_glue_split(path, MRPC, "dev")


def test_unknown_label_names_line_and_allowed_values(tmp_path):
    path = write_mrpc_split(tmp_path / "train.tsv", [("1", "a", "b"), ("yes", "c", "d")])
    with pytest.raises(DataError, match=r"train\.tsv:3: unknown label 'yes'.*0, 1"):
        read_glue_split(path, MRPC, "train")


def test_missing_column_and_missing_file(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("label\tsentence\n1\thello\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.tsv:1: missing column '#1 String'"):
        read_glue_split(path, MRPC, "train")
    with pytest.raises(DataError, match="file not found"):
        read_glue_split(tmp_path / "nope.tsv", MRPC, "train")


def test_empty_file_and_header_only(tmp_path):
    empty = tmp_path / "empty.tsv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        read_glue_split(empty, MRPC, "train")
    header_only = write_mrpc_split(tmp_path / "h.tsv", [])
    with pytest.raises(DataError, match="no examples"):
        read_glue_split(header_only, MRPC, "train")


def test_task_names_are_case_and_hyphen_insensitive():
    assert get_task("MRPC") is MRPC and get_task("m-r-p-c") is MRPC
    with pytest.raises(ConfigError, match="unknown task 'qqq'.*mrpc"):
        get_task("qqq")


def test_prediction_input_tsv_with_and_without_header(tmp_path):
    names = ("sentence1", "sentence2")
    plain = tmp_path / "pairs.tsv"
    plain.write_text("a b\tc d\ne\tf\n", encoding="utf-8")
    assert read_prediction_input(plain, names) == [["a b", "e"], ["c d", "f"]]
    headed = tmp_path / "headed.tsv"
    headed.write_text("sentence1\tsentence2\nx\ty\n", encoding="utf-8")
    assert read_prediction_input(headed, names) == [["x"], ["y"]]
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\nonly\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.tsv:2: expected 2"):
        read_prediction_input(bad, names)


def test_prediction_input_jsonl_errors(tmp_path):
    names = ("sentence1", "sentence2")
    good = tmp_path / "pairs.jsonl"
    good.write_text(
        '{"sentence1": "a", "sentence2": "b"}\n\n{"sentence1": "c", "sentence2": "d"}\n'
    )
    assert read_prediction_input(good, names) == [["a", "c"], ["b", "d"]]
    missing = tmp_path / "missing.jsonl"
    missing.write_text('{"sentence1": "a", "sentence2": "b"}\n{"sentence1": "c"}\n')
    with pytest.raises(DataError, match=r"missing\.jsonl:2: missing field 'sentence2'"):
        read_prediction_input(missing, names)
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{not json\n")
    with pytest.raises(DataError, match=r"broken\.jsonl:1: not valid JSON"):
        read_prediction_input(broken, names)
