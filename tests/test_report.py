"""`bertfit evaluate --report`: per-class precision, recall, F1, support, confusion matrix."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from bertfit.cli import main
from bertfit.train.report import classification_report, format_report

from conftest import write_glue_task

NAMES = ["cat", "dog", "bird"]


def _by_hand(predictions: np.ndarray, labels: np.ndarray, k: int) -> dict:
    """Precision, recall and F1 of each class counted directly (0 where undefined)."""
    rows = {}
    for c in range(k):
        tp = int(np.sum((predictions == c) & (labels == c)))
        predicted, actual = int(np.sum(predictions == c)), int(np.sum(labels == c))
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * tp / (predicted + actual) if predicted + actual else 0.0
        rows[c] = (precision, recall, f1, actual)
    return rows


def test_report_counts_each_class_as_precision_recall_and_f1_define_them():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=200)
    # A skewed predictor: right 70% of the time, never predicts "bird" when wrong.
    predictions = np.where(rng.random(200) < 0.7, labels, rng.integers(0, 2, size=200))
    report = classification_report(predictions, labels, NAMES, "single_label_classification")
    expected = _by_hand(predictions, labels, 3)
    for c, name in enumerate(NAMES):
        row = report["labels"][name]
        assert (row["precision"], row["recall"], row["f1"]) == pytest.approx(expected[c][:3])
        assert row["support"] == expected[c][3]
    macro = report["averages"]["macro"]
    assert macro["f1"] == pytest.approx(np.mean([expected[c][2] for c in range(3)]))
    weights = np.bincount(labels, minlength=3) / len(labels)
    weighted = report["averages"]["weighted"]
    assert weighted["recall"] == pytest.approx(sum(weights[c] * expected[c][1] for c in range(3)))
    assert report["accuracy"] == pytest.approx(np.mean(predictions == labels))
    matrix = np.array(report["confusion_matrix"]["matrix"])
    assert report["confusion_matrix"]["labels"] == NAMES
    for true in range(3):
        for predicted in range(3):
            assert matrix[true, predicted] == np.sum((labels == true) & (predictions == predicted))


def test_a_class_never_predicted_scores_zero_not_nan():
    labels = np.array([0, 0, 1, 2])
    predictions = np.array([0, 0, 0, 0])
    report = classification_report(predictions, labels, NAMES, "single_label_classification")
    assert report["labels"]["dog"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    text = format_report(report)
    assert "nan" not in text
    assert "macro avg" in text and "weighted avg" in text and "confusion matrix" in text


def test_evaluate_report_prints_the_table_and_json_adds_one_key(tiny_run, capsys):
    assert main(["evaluate", str(tiny_run), "--json", "--quiet"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert "report" not in plain
    assert main(["evaluate", str(tiny_run), "--json", "--report", "--quiet"]) == 0
    with_report = json.loads(capsys.readouterr().out)
    report = with_report.pop("report")
    assert with_report == plain  # the flat metrics are unchanged
    dev = report["dev"]
    assert set(dev["labels"]) == {"not_equivalent", "equivalent"}
    assert dev["accuracy"] == pytest.approx(plain["accuracy"])
    assert dev["labels"]["equivalent"]["f1"] == pytest.approx(plain["f1"])
    support = sum(row["support"] for row in dev["labels"].values())
    assert np.sum(dev["confusion_matrix"]["matrix"]) == support
    assert main(["evaluate", str(tiny_run), "--report", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "weighted avg" in text and "confusion matrix" in text and "not_equivalent" in text


def test_report_without_scikit_learn_is_one_line(tiny_run, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn now raises ImportError
    assert main(["evaluate", str(tiny_run), "--report", "--quiet"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "scikit-learn" in error[0] and "bertfit[report]" in error[0]


def test_report_of_a_regression_is_refused(tmp_path, capsys, tiny_model_dir):
    root = write_glue_task(tmp_path / "glue", "stsb")
    run = tmp_path / "run"
    args = ["train", "--task", "stsb", "--output", str(run), "--data-dir", str(root), "--quiet"]
    args += ["--model", str(tiny_model_dir), "--max-seq-length", "32", "--max-steps", "1"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--report"]) == 2
    assert capsys.readouterr().err.strip() == (
        "bertfit: error: --report needs classes; stsb is a regression"
    )
