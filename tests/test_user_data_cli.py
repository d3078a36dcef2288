"""``bertfit train --train FILE --dev FILE`` on the user's own files, then evaluate and predict."""

from __future__ import annotations

import csv
import json

import pytest

from bertfit.cli import main

from conftest import synthetic_pairs


def write_csv(path, n, seed, labels=("no", "yes")):
    (first, second), ys = synthetic_pairs(n, seed)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["claim", "evidence", "verdict"])
        for a, b, y in zip(first, second, ys):
            writer.writerow([a, b, labels[y]])
    return path


def base_args(tmp_path, tiny_model_dir, run):
    args = ["train", "--output", str(run), "--model", str(tiny_model_dir), "--quiet"]
    args += ["--max-seq-length", "32", "--text-a", "claim", "--text-b", "evidence"]
    return args + ["--label", "verdict"]


def test_train_evaluate_predict_on_own_csv(tmp_path, capsys, tiny_model_dir):
    train = write_csv(tmp_path / "train.csv", 64, 1)
    dev = write_csv(tmp_path / "dev.csv", 32, 2)
    run = tmp_path / "run"
    args = base_args(tmp_path, tiny_model_dir, run) + ["--train", str(train), "--dev", str(dev)]
    assert main([*args, "--max-steps", "3"]) == 0
    captured = capsys.readouterr()
    assert "classification" in captured.err  # the inferred task type is said
    config = json.loads((run / "config.json").read_text())
    assert config["task"] == "custom"
    assert config["data"]["task_type"] == "classification"
    assert config["data"]["label_names"] == ["no", "yes"]
    info = json.loads((run / "model" / "bertfit.json").read_text())
    assert info["label_names"] == ["no", "yes"] and info["input_names"] == ["claim", "evidence"]
    assert info["problem_type"] == "single_label_classification"
    history = json.loads((run / "history.jsonl").read_text().splitlines()[-1])
    assert main(["evaluate", str(run), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["accuracy"] == pytest.approx(history["dev_accuracy"])
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"claim": "the red cat .", "evidence": "a blue dog ."}) + "\n")
    assert main(["predict", str(run), "--input", str(pairs)]) == 0
    assert json.loads(capsys.readouterr().out)["label"] in ("no", "yes")
    # The resolved config repeats the run: same data, same labels, same task type.
    assert main(["config", "show", "--config", str(run / "config.json")]) == 0


def test_regression_by_flag_and_bad_dev_label(tmp_path, capsys, tiny_model_dir):
    train = write_csv(tmp_path / "train.csv", 32, 1, labels=("0.5", "4.5"))
    run = tmp_path / "run"
    args = base_args(tmp_path, tiny_model_dir, run) + ["--train", str(train), "--max-steps", "2"]
    assert main([*args, "--regression"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["task_type"] == "regression"
    for name in ("bertfit.json", "config.json"):  # the saved model says so too
        assert json.loads((run / "model" / name).read_text())["problem_type"] == "regression"
    dev = write_csv(tmp_path / "dev.csv", 4, 2, labels=("no", "maybe"))
    train_cls = write_csv(tmp_path / "train2.csv", 32, 1)
    args = base_args(tmp_path, tiny_model_dir, tmp_path / "run2")
    capsys.readouterr()
    code = main([*args, "--train", str(train_cls), "--dev", str(dev)])
    assert code == 2
    assert (
        "dev.csv:3: column 'verdict': label 'maybe' never seen in train" in capsys.readouterr().err
    )
    assert not (tmp_path / "run2").exists()
