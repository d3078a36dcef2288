"""``bertfit train`` and ``evaluate`` on each kind of GLUE task (tiny model, synthetic files)."""

from __future__ import annotations

import json

import pytest

from bertfit.cli import main

from conftest import write_glue_task


@pytest.mark.parametrize(
    "task, metric_keys",
    [
        ("sst-2", {"accuracy"}),
        ("CoLA", {"matthews_correlation"}),
        ("sts-b", {"pearson", "spearman"}),
        ("mnli", {"matched_accuracy", "mismatched_accuracy"}),
        ("qqp", {"accuracy", "f1"}),
    ],
)
def test_train_and_evaluate_each_kind_of_task(tmp_path, capsys, tiny_model_dir, task, metric_keys):
    root = write_glue_task(tmp_path / "glue", task)
    run = tmp_path / "run"
    args = ["train", "--task", task, "--output", str(run), "--data-dir", str(root)]
    args += ["--model", str(tiny_model_dir), "--max-seq-length", "32", "--epochs", "1", "--quiet"]
    # evaluate runs in fp32; so does training's own evaluation here, even on a CPU where auto
    # would pick bf16, so that the two agree to the last digit.
    args += ["--precision", "fp32"]
    assert main(args) == 0
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    dev_keys = {k for k in history[-1] if k.startswith("dev_")}
    assert dev_keys == {f"dev_{key}" for key in metric_keys}
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    # Classification tasks add ece and nll before and after the temperature, for each dev file.
    calibration = set(metrics) - metric_keys
    files = {"mnli": ["matched_", "mismatched_"], "sts-b": []}.get(task, [""])
    assert calibration == {
        f"{file}{name}_{when}" for file in files for name in ("ece", "nll")
        for when in ("before", "after")
    }  # fmt: skip
    for key in metric_keys:
        assert metrics[key] == pytest.approx(history[-1][f"dev_{key}"], abs=1e-6)


def test_regression_predict_gives_a_score(tmp_path, capsys, tiny_model_dir):
    root = write_glue_task(tmp_path / "glue", "stsb")
    run = tmp_path / "run"
    args = ["train", "--task", "stsb", "--output", str(run), "--data-dir", str(root)]
    args += ["--model", str(tiny_model_dir), "--max-seq-length", "32", "--max-steps", "2"]
    assert main([*args, "--quiet"]) == 0
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["num_labels"] == 1 and config["problem_type"] == "regression"
    capsys.readouterr()
    assert main(["predict", str(run), "--sentence1", "a red cat", "--sentence2", "a cat"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert set(row) == {"score", "logits"} and isinstance(row["score"], float)
    assert row["logits"] == [row["score"]]


def test_single_sentence_predict_takes_one_text(tmp_path, capsys, tiny_model_dir):
    root = write_glue_task(tmp_path / "glue", "sst2")
    run = tmp_path / "run"
    args = ["train", "--task", "sst2", "--output", str(run), "--data-dir", str(root)]
    args += ["--model", str(tiny_model_dir), "--max-seq-length", "32", "--max-steps", "2"]
    assert main([*args, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["predict", str(run), "--sentence1", "the red cat sat ."]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["label"] in ("negative", "positive")
