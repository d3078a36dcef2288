"""Calibration math: the expected calibration error, the NLL and the temperature fit."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from bertfit.errors import ConfigError
from bertfit.probabilities import softmax
from bertfit.temperature import (
    ECE_BINS,
    MAX_TEMPERATURE,
    MIN_TEMPERATURE,
    calibration_metrics,
    ece,
    fit_temperature,
    nll,
)


def _calibrated_sample(n: int, classes: int, seed: int):
    """Logits and labels drawn from softmax(logits): calibrated at temperature 1 exactly."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, size=(n, classes))
    probabilities = softmax(logits)
    labels = np.array([rng.choice(classes, p=p) for p in probabilities])
    return logits, labels


def test_ece_by_hand():
    probabilities = np.array([[0.95, 0.05], [0.95, 0.05], [0.4, 0.6], [0.2, 0.8]])
    labels = np.array([0, 1, 1, 1])
    # Bins (15 wide): 0.95 -> bin 14 (2 examples, accuracy 0.5, confidence 0.95);
    # 0.6 -> bin 8 (1 example, right); 0.8 -> bin 11 (1 example, right).
    expected = 0.5 * abs(0.5 - 0.95) + 0.25 * abs(1 - 0.6) + 0.25 * abs(1 - 0.8)
    assert ece(probabilities, labels) == pytest.approx(expected)
    assert ECE_BINS == 15
    # A bin edge: confidence exactly 2/3 lies in bin 9 ((9/15, 10/15]), with 0.62 (bin 9).
    edge = np.array([[2 / 3, 1 / 3], [0.62, 0.38]])
    assert ece(edge, np.array([0, 0])) == pytest.approx(1 - (2 / 3 + 0.62) / 2)


def test_nll_matches_the_definition_and_scales_with_temperature():
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    labels = np.array([0, 1])
    for temperature in (1.0, 2.5):
        probs = softmax(logits, temperature)
        expected = -np.mean(np.log(probs[[0, 1], labels]))
        assert nll(logits, labels, temperature) == pytest.approx(expected)


def test_fit_recovers_the_temperature_of_over_confident_logits():
    logits, labels = _calibrated_sample(4000, 3, seed=0)
    for stretch in (0.5, 1.0, 3.0):
        fitted = fit_temperature(logits * stretch, labels)
        assert fitted == pytest.approx(stretch, rel=0.1)
        # It is the NLL's minimum: scipy's bounded search agrees.
        search = minimize_scalar(
            lambda t, s=stretch: nll(logits * s, labels, t), bounds=(0.05, 20), method="bounded"
        )
        assert fitted == pytest.approx(search.x, rel=1e-3)


def test_temperature_cuts_ece_and_nll_of_an_over_confident_model():
    logits, labels = _calibrated_sample(4000, 2, seed=1)
    over_confident = logits * 4.0
    temperature = fit_temperature(over_confident, labels)
    before = calibration_metrics(over_confident, labels)
    after = calibration_metrics(over_confident, labels, temperature)
    assert after["nll"] < before["nll"]
    assert after["ece"] <= before["ece"] / 2 and after["ece"] <= 0.05
    # Scaling never changes which class wins.
    assert (softmax(over_confident, temperature).argmax(1) == over_confident.argmax(1)).all()


def test_degenerate_sets_give_a_clipped_finite_temperature():
    logits = np.array([[3.0, -3.0], [-2.0, 2.0]])
    # All right: sharper is always better, until the NLL is flat at zero in double precision.
    sharp = fit_temperature(logits, np.array([0, 1]))
    assert MIN_TEMPERATURE <= sharp < 0.5 and nll(logits, np.array([0, 1]), sharp) < 1e-6
    # All wrong: flatter is always better, up to the edge of the range.
    assert fit_temperature(logits, np.array([1, 0])) == pytest.approx(MAX_TEMPERATURE)


@pytest.mark.parametrize(
    ("logits", "labels", "message"),
    [
        (np.zeros((3, 1)), np.zeros(3, int), r"class logits \[n, classes >= 2\]"),
        (np.zeros((3, 2)), np.zeros(2, int), "3 logits rows but labels of shape"),
        (np.zeros((0, 2)), np.zeros(0, int), "at least one labelled example"),
        (np.array([[np.nan, 0.0]]), np.zeros(1, int), "NaN or infinite"),
        (np.zeros((2, 2)), np.array([0, 2]), r"class ids in 0..1"),
        (np.zeros((2, 2)), np.array([0.0, 1.0]), r"class ids in 0..1"),
    ],
)
def test_bad_inputs_are_refused_with_a_clear_error(logits, labels, message):
    with pytest.raises(ConfigError, match=message):
        fit_temperature(logits, labels)


# -- the temperature in saved models and exports ------------------------------------------------


@pytest.fixture
def tiny_classifier(tmp_path):
    import torch

    from conftest import make_tiny_classifier

    classifier = make_tiny_classifier(tmp_path)
    with torch.no_grad():
        for parameter in classifier.model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0.0, 0.3, generator=torch.Generator().manual_seed(2))
    return classifier


COLUMNS = [["the cat sat on the mat .", "a red dog"], ["a cat sat", "the blue mat ."]]


def test_a_saved_temperature_calibrates_predict_and_every_export(tiny_classifier, tmp_path):
    from bertfit.export.export import export_classifier
    from bertfit.export.runtime import load_exported
    from bertfit.inference import TextClassifier

    tiny_classifier.info.temperature = 3.0
    tiny_classifier.save_pretrained(tmp_path / "model")
    classifier = TextClassifier.from_pretrained(tmp_path / "model")
    assert classifier.temperature == 3.0
    logits = classifier.logits(COLUMNS)
    calibrated = [row["probabilities"] for row in classifier.predict(COLUMNS)]
    raw = [row["probabilities"] for row in classifier.predict(COLUMNS, calibrated=False)]
    np.testing.assert_allclose(calibrated, softmax(logits, 3.0), atol=1e-6)
    np.testing.assert_allclose(raw, softmax(logits), atol=1e-6)
    for export_format in ("onnx", "torch-export"):
        output = tmp_path / export_format
        export_classifier(classifier, output, export_format=export_format, check_examples=0)
        predictor = load_exported(output)
        assert predictor.temperature == 3.0
        inputs = dict(zip(classifier.info.input_names, COLUMNS))
        np.testing.assert_allclose(predictor(inputs)["probabilities"], calibrated, atol=1e-5)
        np.testing.assert_allclose(
            predictor(inputs, calibrated=False)["probabilities"], raw, atol=1e-5
        )


def test_a_model_from_before_calibration_predicts_with_temperature_1_said_once(
    tiny_classifier, tmp_path, capsys
):
    import json

    from bertfit.inference import TextClassifier

    tiny_classifier.save_pretrained(tmp_path / "model")
    info_file = tmp_path / "model" / "bertfit.json"
    info = json.loads(info_file.read_text())
    del info["temperature"]  # as written before calibration existed
    info_file.write_text(json.dumps(info))
    classifier = TextClassifier.from_pretrained(tmp_path / "model")
    first = classifier.predict(COLUMNS)
    classifier.predict(COLUMNS)
    np.testing.assert_allclose(
        [row["probabilities"] for row in first], softmax(classifier.logits(COLUMNS)), atol=1e-6
    )
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "no fitted temperature" in notes[0]
    assert str(tmp_path / "model") in notes[0]


def test_a_bad_stored_temperature_names_the_file_and_field(tiny_classifier, tmp_path):
    import json

    from bertfit.errors import CheckpointError
    from bertfit.inference import TextClassifier

    tiny_classifier.save_pretrained(tmp_path / "model")
    info_file = tmp_path / "model" / "bertfit.json"
    info = json.loads(info_file.read_text())
    info["temperature"] = -1
    info_file.write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match=r"bertfit.json: temperature must be a positive"):
        TextClassifier.from_pretrained(tmp_path / "model")
