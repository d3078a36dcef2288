"""The problem type: one field from the config to the saved model and its exports, and the one
function that turns logits into result rows for ``predict``, the exported predictor and the server.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from bertfit.errors import CheckpointError, ConfigError
from bertfit.export.export import export_classifier
from bertfit.export.runtime import load_exported
from bertfit.export.spec import ClassifierSpec
from bertfit.inference import TextClassifier
from bertfit.predictions import prediction_columns, prediction_rows
from bertfit.problem import (
    PROBLEM_TYPES,
    REGRESSION,
    SINGLE_LABEL,
    TASK_TYPES,
    legacy_problem_type,
    stored_problem_type,
    task_type_of,
)
from bertfit.serve import ServeConfig
from bertfit.serve.app import create_app
from bertfit.train.config import RunConfig
from bertfit.train.run import task_of

from conftest import make_tiny_classifier

PAIR = {"sentence1": ["the cat sat .", "a dog", "red"], "sentence2": ["a cat", "the dog .", "x"]}
COLUMNS = [PAIR["sentence1"], PAIR["sentence2"]]
# Logits fed through every path, so that the paths' rows can be compared exactly.
LOGITS = {
    SINGLE_LABEL: np.array([[0.25, -1.5], [2.0, 3.125], [-0.5, -0.75]], dtype=np.float32),
    REGRESSION: np.array([[4.25], [-0.125], [1.5]], dtype=np.float32),
}
TEMPERATURE = 1.75
# Each problem type's fields, in order.
FIELDS = {
    SINGLE_LABEL: ["label", "class_id", "probabilities", "logits"],
    REGRESSION: ["score", "logits"],
}


def tiny(tmp_path: Path, problem_type: str) -> TextClassifier:
    """The tiny classifier of ``problem_type`` (a regression's one output is named score)."""
    outputs = 1 if problem_type == REGRESSION else 2
    classifier = make_tiny_classifier(tmp_path, num_classes=outputs, problem_type=problem_type)
    if problem_type == REGRESSION:
        classifier.info.label_names = ["score"]
    else:
        classifier.info.temperature = TEMPERATURE
    return classifier


@pytest.fixture(scope="module", params=[SINGLE_LABEL, REGRESSION])
def saved(request, tmp_path_factory):
    """(problem type, a saved model directory, its ONNX export)."""
    root = tmp_path_factory.mktemp(request.param)
    classifier = tiny(root, request.param)
    classifier.save_pretrained(root / "model")
    export_classifier(classifier, root / "export", check_examples=0)
    return request.param, root / "model", root / "export"


# -- the field and its words ----------------------------------------------------------------------


def test_problem_types_use_hugging_faces_names_and_the_users_words_map_both_ways():
    assert PROBLEM_TYPES == (
        "single_label_classification",
        "regression",
        "multi_label_classification",
    )
    assert TASK_TYPES == {
        "classification": SINGLE_LABEL,
        "regression": REGRESSION,
        "multi_label": "multi_label_classification",
    }
    for word, problem_type in TASK_TYPES.items():
        assert task_type_of(problem_type) == word
    # data.task_type takes "auto" and the user's words, from the one list.
    with pytest.raises(ConfigError, match="expected one of \\['auto', 'classification', 'regre"):
        RunConfig.from_dict({"data": {"train_file": "t.csv", "task_type": "multilabel"}})


def test_a_stored_problem_type_is_checked_and_a_missing_one_is_inferred_once():
    assert legacy_problem_type(1) == REGRESSION and legacy_problem_type(3) == SINGLE_LABEL
    assert stored_problem_type(None, 1, "f") == REGRESSION
    assert stored_problem_type(None, 2, "f") == SINGLE_LABEL
    assert stored_problem_type(REGRESSION, 1, "f") == REGRESSION
    with pytest.raises(CheckpointError, match="^f: a regression model has one output, not 2$"):
        stored_problem_type(REGRESSION, 2, "f")
    with pytest.raises(CheckpointError, match="^f: a single-label classifier needs at least 2"):
        stored_problem_type(SINGLE_LABEL, 1, "f")
    assert stored_problem_type("multi_label_classification", 4, "f") == "multi_label_classification"
    with pytest.raises(CheckpointError, match="^f: problem_type must be one of"):
        stored_problem_type("multi_class", 4, "f")
    with pytest.raises(CheckpointError, match="must be a string"):
        stored_problem_type(True, 1, "f")


@pytest.mark.parametrize("task_type", ["classification", "regression"])
def test_the_run_configs_task_type_gives_the_tasks_problem_type(task_type):
    data = {"train_file": "t.csv", "task_type": task_type, "label_names": ["no", "yes"]}
    config = RunConfig.from_dict({"task": "custom", "data": data})
    again = RunConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again.data.task_type == task_type
    task = task_of(again)
    assert task.problem_type == TASK_TYPES[task_type]
    assert task.num_classes == (1 if task_type == "regression" else 2)


# -- saved models and exports -------------------------------------------------------------------


def test_the_problem_type_round_trips_through_save_load_and_export(saved):
    problem_type, model_dir, export_dir = saved
    assert json.loads((model_dir / "bertfit.json").read_text())["problem_type"] == problem_type
    assert json.loads((model_dir / "config.json").read_text())["problem_type"] == problem_type
    loaded = TextClassifier.from_pretrained(model_dir)
    assert loaded.problem_type == loaded.model.problem_type == problem_type
    assert loaded.info.problem_type == problem_type
    spec = json.loads((export_dir / "classifier.json").read_text())
    assert spec["problem_type"] == problem_type
    assert load_exported(export_dir).problem_type == problem_type


def test_models_saved_before_the_field_still_load(saved, tmp_path):
    problem_type, model_dir, export_dir = saved
    old = tmp_path / "old-model"
    TextClassifier.from_pretrained(model_dir).save_pretrained(old)
    for name in ("bertfit.json", "config.json"):  # neither file said it before
        data = json.loads((old / name).read_text())
        del data["problem_type"]
        (old / name).write_text(json.dumps(data))
    loaded = TextClassifier.from_pretrained(old)
    assert loaded.problem_type == loaded.info.problem_type == problem_type
    assert list(loaded.predict(COLUMNS)[0]) == FIELDS[problem_type]
    # An export written before it: a classifier.json without the key.
    spec = json.loads((export_dir / "classifier.json").read_text())
    del spec["problem_type"]
    path = tmp_path / "classifier.json"
    path.write_text(json.dumps(spec))
    assert ClassifierSpec.read(path).problem_type == problem_type


def test_disagreeing_or_unsupported_records_are_refused(tmp_path):
    model_dir = tmp_path / "model"
    tiny(tmp_path, SINGLE_LABEL).save_pretrained(model_dir)
    info = json.loads((model_dir / "bertfit.json").read_text())
    (model_dir / "bertfit.json").write_text(json.dumps({**info, "problem_type": REGRESSION}))
    with pytest.raises(CheckpointError, match="bertfit.json: problem_type 'regression' differs"):
        TextClassifier.from_pretrained(model_dir)
    (model_dir / "bertfit.json").write_text(json.dumps(info))
    config = json.loads((model_dir / "config.json").read_text())
    config["problem_type"] = "multi_label_classification"  # transformers' third kind
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="problem_type 'single_label_classification' differs"):
        TextClassifier.from_pretrained(model_dir)
    config["problem_type"] = "multi_class"  # no kind at all
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="config.json: problem_type must be one of"):
        TextClassifier.from_pretrained(model_dir)


def test_an_export_whose_problem_type_contradicts_its_outputs_is_refused(saved, tmp_path):
    _, _, export_dir = saved
    spec = json.loads((export_dir / "classifier.json").read_text())
    spec["problem_type"] = SINGLE_LABEL if spec["model"]["num_classes"] == 1 else REGRESSION
    path = tmp_path / "classifier.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(CheckpointError, match=f"^{path}: a (regression|single-label)"):
        ClassifierSpec.read(path)


# -- one function for result rows ---------------------------------------------------------------


def test_classification_rows_by_hand():
    logits = LOGITS[SINGLE_LABEL]
    rows = prediction_rows(logits, SINGLE_LABEL, ["no", "yes"], TEMPERATURE)
    assert [list(row) for row in rows] == [FIELDS[SINGLE_LABEL]] * 3
    assert [row["label"] for row in rows] == ["no", "yes", "no"]
    assert [row["class_id"] for row in rows] == [0, 1, 0]
    for row, values in zip(rows, logits.tolist()):
        exps = [math.exp(v / TEMPERATURE) for v in values]
        assert row["probabilities"] == pytest.approx([e / sum(exps) for e in exps], abs=1e-7)
        assert row["logits"] == values  # not rounded: the float32 values themselves
    raw = prediction_rows(logits, SINGLE_LABEL, ["no", "yes"])
    assert raw[0]["probabilities"][0] > rows[0]["probabilities"][0]  # T > 1 softens
    assert prediction_rows(np.zeros((0, 2), np.float32), SINGLE_LABEL, ["no", "yes"]) == []


def test_regression_rows_by_hand():
    rows = prediction_rows(LOGITS[REGRESSION], REGRESSION, ["score"], TEMPERATURE)
    assert rows == [
        {"score": 4.25, "logits": [4.25]},
        {"score": -0.125, "logits": [-0.125]},
        {"score": 1.5, "logits": [1.5]},
    ]
    columns = prediction_columns(LOGITS[REGRESSION], REGRESSION, ["score"])
    assert list(columns) == ["score", "logits"]
    with pytest.raises(ValueError, match="unknown problem type"):
        prediction_columns(LOGITS[REGRESSION], "ordinal", ["score"])


def test_predict_the_exported_predictor_and_the_server_give_the_same_rows(saved, monkeypatch):
    """The same logits through the three paths: the same fields, the same values."""
    problem_type, model_dir, export_dir = saved
    logits = LOGITS[problem_type]

    def fixed_logits(columns, batch_size=None):
        assert len(columns[0]) == len(logits)
        return logits.copy()

    classifier = TextClassifier.from_pretrained(model_dir)
    monkeypatch.setattr(classifier, "logits", fixed_logits)
    predicted = classifier.predict(COLUMNS)

    predictor = load_exported(export_dir)
    monkeypatch.setattr(predictor, "logits", fixed_logits)
    out = predictor(PAIR)
    if problem_type == SINGLE_LABEL:  # the reference tutorial's column name, kept beside label
        assert out["class"].tolist() == out["label"].tolist()
        del out["class"]
    names = list(out)
    exported = [dict(zip(names, row)) for row in zip(*(out[name].tolist() for name in names))]

    with TestClient(create_app(predictor, ServeConfig(max_wait_ms=0.0))) as client:
        instances = [dict(zip(PAIR, texts)) for texts in zip(*PAIR.values())]
        served = client.post("/predict", json={"instances": instances}).json()["predictions"]
        assert client.get("/metadata").json()["problem_type"] == problem_type

    expected = prediction_rows(logits, problem_type, classifier.info.label_names, TEMPERATURE)
    assert predicted == exported == served == expected
    assert [list(row) for row in served] == [FIELDS[problem_type]] * len(logits)
