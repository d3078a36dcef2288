"""Calibration of runs: after training, ``bertfit calibrate``, ``evaluate``'s ece/nll, and the
temperature in ``predict`` and exports."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from bertfit.cli import main
from bertfit.data.readers import read_glue_split
from bertfit.data.tasks import MRPC
from bertfit.inference import TextClassifier
from bertfit.probabilities import softmax
from bertfit.temperature import calibration_metrics, fit_temperature

from conftest import write_glue_task


def _dev(run):
    config = json.loads((run / "config.json").read_text())
    from pathlib import Path

    return read_glue_split(Path(config["data_dir"]) / "dev.tsv", MRPC, "dev")


def test_training_fits_the_temperature_on_the_dev_set_and_records_it(tiny_run):
    info = json.loads((tiny_run / "model" / "bertfit.json").read_text())
    record = json.loads((tiny_run / "calibration.json").read_text())
    results = json.loads((tiny_run / "results.json").read_text())
    assert results["calibration"] == record
    assert info["temperature"] == record["temperature"]
    # Independently: the saved model's dev logits, the NLL's minimum.
    dev = _dev(tiny_run)
    classifier = TextClassifier.from_pretrained(tiny_run / "model")
    logits = classifier.logits(dev.columns)
    labels = np.asarray(dev.labels)
    assert record["temperature"] == pytest.approx(fit_temperature(logits, labels), rel=1e-4)
    assert record["examples"] == len(labels) and record["splits"] == ["dev"]
    before = calibration_metrics(logits, labels)
    after = calibration_metrics(logits, labels, record["temperature"])
    assert record["before"] == pytest.approx(before, rel=1e-4)
    assert record["after"] == pytest.approx(after, rel=1e-4)
    # The fitted temperature is the NLL's minimum, so it improves on temperature 1.
    assert after["nll"] < before["nll"]


def test_calibrate_command_fits_an_old_run_and_evaluate_reports_before_and_after(
    tiny_run, tmp_path, capsys
):
    run = tmp_path / "old-run"
    shutil.copytree(tiny_run, run)
    info_file = run / "model" / "bertfit.json"
    info = json.loads(info_file.read_text())
    fitted = info.pop("temperature")
    info_file.write_text(json.dumps(info))  # as a run trained before calibration
    (run / "calibration.json").unlink()

    assert main(["evaluate", str(run), "--json"]) == 0
    captured = capsys.readouterr()
    uncalibrated = json.loads(captured.out)
    assert uncalibrated["ece_before"] == uncalibrated["ece_after"]  # temperature 1
    assert captured.err.count("no fitted temperature") == 1

    assert main(["calibrate", str(run)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("calibrated: temperature ")
    assert json.loads(info_file.read_text())["temperature"] == pytest.approx(fitted, rel=1e-6)
    record = json.loads((run / "calibration.json").read_text())

    assert main(["evaluate", str(run), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["ece_before"] == pytest.approx(record["before"]["ece"], rel=1e-5)
    assert metrics["ece_after"] == pytest.approx(record["after"]["ece"], rel=1e-5)
    assert metrics["nll_after"] == pytest.approx(record["after"]["nll"], rel=1e-5)
    assert metrics["nll_after"] < metrics["nll_before"]
    assert main(["evaluate", str(run)]) == 0
    text = capsys.readouterr().out
    assert "  ece_after: " in text and f"at the model's {fitted:.4f}" in text


def test_predict_is_calibrated_unless_raw_probabilities_are_asked_for(tiny_run, capsys):
    pair = ["--sentence1", "the red cat sat .", "--sentence2", "a blue dog ran ."]
    assert main(["predict", str(tiny_run), *pair]) == 0
    calibrated = json.loads(capsys.readouterr().out)
    assert main(["predict", str(tiny_run), *pair, "--raw-probabilities"]) == 0
    raw = json.loads(capsys.readouterr().out)
    temperature = json.loads((tiny_run / "model" / "bertfit.json").read_text())["temperature"]
    logits = np.asarray(calibrated["logits"])
    np.testing.assert_allclose(calibrated["probabilities"], softmax(logits, temperature), atol=1e-6)
    np.testing.assert_allclose(raw["probabilities"], softmax(logits), atol=1e-6)
    assert calibrated["label"] == raw["label"]


def test_the_export_carries_the_runs_temperature(tiny_run, tmp_path):
    from bertfit.export.export import export_classifier
    from bertfit.export.runtime import load_exported

    export_classifier(tiny_run, tmp_path / "onnx", check_examples=4)
    temperature = json.loads((tiny_run / "model" / "bertfit.json").read_text())["temperature"]
    spec = json.loads((tmp_path / "onnx" / "classifier.json").read_text())
    assert spec["temperature"] == temperature
    assert load_exported(tmp_path / "onnx").temperature == temperature


def test_regression_runs_skip_calibration_and_refuse_the_command(tmp_path, capsys, tiny_model_dir):
    root = write_glue_task(tmp_path / "glue", "stsb")
    run = tmp_path / "run"
    args = ["train", "--task", "stsb", "--output", str(run), "--data-dir", str(root), "--quiet"]
    args += ["--model", str(tiny_model_dir), "--max-seq-length", "32", "--max-steps", "2"]
    assert main(args) == 0
    assert "calibrated" not in capsys.readouterr().out
    assert not (run / "calibration.json").exists()
    assert json.loads((run / "model" / "bertfit.json").read_text())["temperature"] is None
    assert main(["calibrate", str(run)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [
        "bertfit: error: stsb is a regression task: it has no class probabilities to calibrate"
    ]


def test_calibration_after_training_fits_the_best_evaluations_logits_without_a_second_pass(
    tiny_run, tmp_path
):
    from bertfit.train.calibrate import calibrate_trained
    from bertfit.train.evaluate import encode_examples, logits_of_encoded

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    classifier = TextClassifier.from_pretrained(run / "model")
    dev = {"dev": encode_examples(classifier, MRPC, _dev(run))}
    logits = logits_of_encoded(classifier, dev["dev"])
    # Logits the saved model would not give: the fit must come from them, not from a new pass.
    sharper = {"dev": logits * 3.0}
    given = calibrate_trained(run, MRPC, dev, best_logits=sharper)
    assert given.temperature == pytest.approx(
        fit_temperature(sharper["dev"], dev["dev"].labels), rel=1e-6
    )
    # Without them (a best model chosen before a resume) the saved model is evaluated again.
    again = calibrate_trained(run, MRPC, dev)
    assert again.temperature == pytest.approx(fit_temperature(logits, dev["dev"].labels), rel=1e-6)
    assert given.temperature == pytest.approx(3.0 * again.temperature, rel=1e-3)
    saved = json.loads((run / "model" / "bertfit.json").read_text())["temperature"]
    assert saved == again.temperature
