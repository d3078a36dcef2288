"""A run or an export, chosen once (:mod:`bertfit.predictors`) for ``predict`` and ``explain``."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from bertfit.errors import ConfigError, DataError
from bertfit.export.export import export_classifier
from bertfit.export.runtime import ExportedClassifier
from bertfit.inference import TextClassifier
from bertfit.predictors import (
    EXPORT,
    RUN,
    default_explain_method,
    load_predictor,
    source_kind,
)
from bertfit.problem import REGRESSION

from conftest import BLOCK_TORCH, make_tiny_classifier

PAIRS = [
    {"sentence1": "the cat sat on a red mat .", "sentence2": "a big dog ran ."},
    {"sentence1": "a blue bird .", "sentence2": "the red fox and the green frog ."},
    {"sentence1": "green .", "sentence2": "blue ."},
]


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    output = tmp_path_factory.mktemp("export") / "onnx"
    export_classifier(tiny_run, output, check_examples=0)
    return output


def test_each_kind_of_source_gives_its_predictor(tiny_run, exported, tmp_path):
    assert source_kind(tiny_run) == RUN and source_kind(exported) == EXPORT
    for source in (tiny_run, tiny_run / "model"):
        predictor = load_predictor(source)
        assert isinstance(predictor, TextClassifier)
        assert default_explain_method(predictor) == "integrated_gradients"
    predictor = load_predictor(exported)
    assert isinstance(predictor, ExportedClassifier)
    assert default_explain_method(predictor) == "occlusion"
    with pytest.raises(ConfigError) as error:
        load_predictor(tmp_path)
    message = str(error.value)
    assert message.startswith(f"{tmp_path}: not a bertfit run")
    assert "model/bertfit.json" in message and "manifest.json" in message


def _predict(source, *flags: str) -> list[dict]:
    result = subprocess.run(
        [sys.executable, "-m", "bertfit", "predict", str(source), *flags, "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_predict_takes_an_export_and_answers_as_the_run_does(tiny_run, exported, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(pair) + "\n" for pair in PAIRS), encoding="utf-8")
    for flags in (["--input", str(pairs)], ["--input", str(pairs), "--raw-probabilities"]):
        from_run, from_export = _predict(tiny_run, *flags), _predict(exported, *flags)
        assert len(from_run) == len(from_export) == len(PAIRS)
        for run_row, export_row in zip(from_run, from_export):
            assert set(export_row) == {"label", "class_id", "probabilities", "logits"}
            assert export_row["label"] == run_row["label"]
            assert export_row["class_id"] == run_row["class_id"]
            assert export_row["probabilities"] == pytest.approx(run_row["probabilities"], abs=1e-5)
            assert export_row["logits"] == pytest.approx(run_row["logits"], abs=1e-4)
    calibrated, raw = (
        _predict(exported, "--input", str(pairs)),
        _predict(exported, "--input", str(pairs), "--raw-probabilities"),
    )
    # the tiny run was calibrated at the end of training: its temperature changes the numbers
    assert calibrated[0]["probabilities"] != pytest.approx(raw[0]["probabilities"], abs=1e-4)


NO_TORCH_PREDICT = (
    BLOCK_TORCH
    + """
from bertfit.cli import main
code = main(["predict", sys.argv[1], "--sentence1", "a red cat .", "--sentence2", "a dog ."])
assert "torch" not in sys.modules, "predict on an export imported torch"
sys.exit(code)
"""
)


def test_predict_on_an_export_needs_no_torch(exported):
    result = subprocess.run(
        [sys.executable, "-c", NO_TORCH_PREDICT, str(exported)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["label"] in ("equivalent", "not_equivalent")


def test_a_regression_export_predicts_a_score_like_its_model(tmp_path):
    tiny = make_tiny_classifier(tmp_path, num_classes=1, problem_type=REGRESSION)
    tiny.info = dataclasses.replace(tiny.info, task="sts-b", label_names=["score"])
    model_dir = tmp_path / "model"
    tiny.save_pretrained(model_dir)
    export_classifier(model_dir, tmp_path / "export", check_examples=0)
    columns = [[pair["sentence1"] for pair in PAIRS], [pair["sentence2"] for pair in PAIRS]]
    from_model = load_predictor(model_dir).predict(columns)
    from_export = load_predictor(tmp_path / "export").predict(columns)
    assert [set(row) for row in from_export] == [{"score", "logits"}] * len(PAIRS)
    assert [r["score"] for r in from_export] == pytest.approx(
        [r["score"] for r in from_model], abs=1e-4
    )
    assert len({round(r["score"], 5) for r in from_export}) > 1


def test_an_export_refuses_columns_that_are_not_its_inputs(exported):
    predictor = load_predictor(exported)
    with pytest.raises(DataError, match=r"one list of texts per input column"):
        predictor.predict([["only one column"]])
