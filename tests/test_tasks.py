"""The GLUE task registry: every task's layout read from real files or files in GLUE's format."""

from __future__ import annotations

import pytest

from bertfit.data.readers import read_glue_split
from bertfit.data.tasks import TASKS, get_task
from bertfit.errors import ConfigError, DataError
from bertfit.problem import REGRESSION

# (task, split, rows, label sum or None): counts from ../shared/data/README.md.
REAL_COUNTS = [
    ("cola", "train", 8551, 6023),
    ("cola", "dev", 1043, 721),
    ("cola", "test", 1063, None),
    ("sst2", "train", 67349, 37569),
    ("sst2", "dev", 872, 444),
    ("sst2", "test", 1821, None),
    ("rte", "train", 2490, 2490 - 1249),  # class 1 is not_entailment
    ("rte", "dev", 277, 277 - 146),
    ("rte", "test", 3000, None),
    ("wnli", "train", 635, 312),
    ("wnli", "dev", 71, 31),
    ("wnli", "test", 146, None),
    ("stsb", "train", 5749, None),
    ("stsb", "dev", 1500, None),
    ("stsb", "test", 1379, None),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, split, rows, positives", REAL_COUNTS)
def test_real_glue_files(glue_dir, name, split, rows, positives):
    task = get_task(name)
    examples = read_glue_split(glue_dir / task.glue_dir / f"{split}.tsv", task, split)
    assert len(examples) == rows
    assert len(examples.columns) == len(task.input_names)
    if split == "test":
        assert examples.labels is None
    elif task.problem_type == REGRESSION:
        assert all(0.0 <= y <= 5.0 for y in examples.labels)
    else:
        assert sum(examples.labels) == positives


def test_cola_has_no_header_and_a_missing_final_newline(tmp_path):
    path = tmp_path / "dev.tsv"
    path.write_text("gj04\t1\t\tThe sailors rode the breeze .\ngj04\t0\t*\tThey drank the pub .")
    examples = read_glue_split(path, get_task("CoLA"), "dev")
    assert examples.columns == [["The sailors rode the breeze .", "They drank the pub ."]]
    assert examples.labels == [1, 0]


def test_sst2_trailing_space_is_kept_in_text(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("sentence\tlabel\nhide new secretions \t0\n")
    examples = read_glue_split(path, get_task("sst-2"), "train")
    assert examples.columns == [["hide new secretions "]] and examples.labels == [0]


def test_stsb_regression_targets_and_bad_target(tmp_path):
    header = (
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    )
    row = "0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane.\tAn air plane.\t{}\n"
    good = tmp_path / "dev.tsv"
    good.write_text(header + row.format("5.000") + row.format("0.25"))
    task = get_task("STS-B")
    assert task.num_classes == 1 and task.metrics == ("pearson", "spearman")
    assert read_glue_split(good, task, "dev").labels == [5.0, 0.25]
    bad = tmp_path / "bad.tsv"
    bad.write_text(header + row.format("5.000") + row.format("high"))
    with pytest.raises(DataError, match=r"bad\.tsv:3: regression target 'high' is not a number"):
        read_glue_split(bad, task, "dev")


def test_qqp_layout(tmp_path):
    train = tmp_path / "train.tsv"
    train.write_text(
        "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
        "0\t1\t2\tHow do I cook rice?\tWhat is the way to cook rice?\t1\n"
    )
    test = tmp_path / "test.tsv"
    test.write_text("id\tquestion1\tquestion2\n0\tWhy?\tWhy not?\n")
    task = get_task("qqp")
    assert read_glue_split(train, task, "train").labels == [1]
    assert read_glue_split(test, task, "test").columns == [["Why?"], ["Why not?"]]


MNLI_TRAIN_HEADER = (
    "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
    "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label\n"
)
MNLI_DEV_HEADER = (
    "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
    "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\tlabel4\t"
    "label5\tgold_label\n"
)


def test_mnli_two_dev_files_and_three_classes(tmp_path):
    parse = "( ( A ) )\t( ( B ) )\t(ROOT A)\t(ROOT B)"
    (tmp_path / "train.tsv").write_text(
        MNLI_TRAIN_HEADER + f"0\t1\t1e\tfiction\t{parse}\tA man.\tA person.\tneutral\tneutral\n"
    )
    for split in ("dev_matched", "dev_mismatched"):
        (tmp_path / f"{split}.tsv").write_text(
            MNLI_DEV_HEADER
            + f"0\t1\t1e\tslate\t{parse}\tA cat.\tNo cat.\tcontradiction\tcontradiction"
            "\tneutral\tcontradiction\tcontradiction\tcontradiction\n"
        )
    task = get_task("MNLI")
    assert task.num_classes == 3 and task.dev_splits == ("dev_matched", "dev_mismatched")
    assert read_glue_split(tmp_path / "train.tsv", task, "train").labels == [1]
    assert read_glue_split(tmp_path / "dev_matched.tsv", task, "dev_matched").labels == [2]
    with pytest.raises(ConfigError, match="no split 'dev'"):
        read_glue_split(tmp_path / "dev_matched.tsv", task, "dev")


def test_qnli_and_rte_string_labels(tmp_path):
    path = tmp_path / "dev.tsv"
    path.write_text("index\tquestion\tsentence\tlabel\n0\tWho?\tHe did.\tnot_entailment\n")
    assert read_glue_split(path, get_task("qnli"), "dev").labels == [1]
    rte = tmp_path / "rte.tsv"
    rte.write_text("index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tentailment\n1\tC.\tD.\tmaybe\n")
    with pytest.raises(DataError, match=r"rte\.tsv:3: unknown label 'maybe'"):
        read_glue_split(rte, get_task("rte"), "dev")


@pytest.mark.parametrize("alias", ["STS-B", "stsb", "sts-b", "SST-2", "sst2", "Sst-2", "cola"])
def test_names_as_glue_writes_them(alias):
    assert get_task(alias).name in TASKS


def test_registry_covers_glue_with_true_metrics():
    metrics = {name: task.metrics for name, task in TASKS.items()}
    assert metrics == {
        "cola": ("matthews_correlation",),
        "sst2": ("accuracy",),
        "mrpc": ("accuracy", "f1"),
        "stsb": ("pearson", "spearman"),
        "qqp": ("accuracy", "f1"),
        "mnli": ("accuracy",),
        "qnli": ("accuracy",),
        "rte": ("accuracy",),
        "wnli": ("accuracy",),
    }
    assert [t.name for t in TASKS.values() if len(t.input_names) == 1] == ["cola", "sst2"]
