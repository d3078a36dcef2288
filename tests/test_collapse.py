"""Collapse warnings: a model that predicts one class (or one score) for everything is flagged."""

from __future__ import annotations

import torch

from bertfit.data.readers import TextExamples
from bertfit.data.tasks import MRPC
from bertfit.problem import REGRESSION, SINGLE_LABEL
from bertfit.train.config import TrainerConfig
from bertfit.train.metrics import collapse_message
from bertfit.train.optim import OptimizationConfig
from bertfit.train.trainer import Trainer

from conftest import make_tiny_classifier, synthetic_pairs

NAMES = ("not_equivalent", "equivalent")


def test_single_class_is_a_collapse():
    message = collapse_message([1, 1, 1, 1], NAMES, problem_type=SINGLE_LABEL)
    assert message and "'equivalent'" in message and "all 4" in message
    assert collapse_message([1, 0, 1, 1], NAMES, problem_type=SINGLE_LABEL) is None


def test_constant_regression_is_a_collapse():
    assert collapse_message([2.5, 2.5001, 2.4999], ("score",), problem_type=REGRESSION)
    assert collapse_message([0.0, 0.0, 0.0], ("score",), problem_type=REGRESSION)
    assert collapse_message([0.5, 2.5, 4.0], ("score",), problem_type=REGRESSION) is None


def test_trainer_warns_when_dev_predictions_collapse(tmp_path, capsys):
    classifier = make_tiny_classifier(tmp_path)
    with torch.no_grad():  # a head that says "not_equivalent" whatever the input
        classifier.model.classifier.dense.weight.zero_()
        classifier.model.classifier.dense.bias.copy_(torch.tensor([10.0, -10.0]))
    trainer = Trainer(
        classifier,
        MRPC,
        TrainerConfig(epochs=1, max_steps=1, batch_size=8),
        OptimizationConfig(learning_rate=1e-12),
        progress=False,
    )
    columns, labels = synthetic_pairs(32, 1)
    data = trainer.encode(TextExamples(columns, labels, "synthetic"))
    result = trainer.fit(data, data)
    assert result.history[-1]["collapsed"] == ["dev"]
    assert "collapse: the model predicts 'not_equivalent' for all 32" in capsys.readouterr().err
