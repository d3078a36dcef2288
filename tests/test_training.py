"""The trainer learns, is reproducible, evaluates when --max-steps stops mid-epoch."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bertfit.data.readers import TextExamples
from bertfit.data.tasks import MRPC
from bertfit.inference import TextClassifier
from bertfit.train.config import TrainerConfig
from bertfit.train.optim import OptimizationConfig
from bertfit.train.trainer import Trainer

from conftest import make_tiny_classifier, synthetic_pairs


def _examples(n: int, seed: int) -> TextExamples:
    columns, labels = synthetic_pairs(n, seed)
    return TextExamples(columns, labels, "synthetic")


def _trainer(tmp_path, output=None, **trainer_settings) -> Trainer:
    settings = {"epochs": 6, "batch_size": 32, "seed": 0, **trainer_settings}
    return Trainer(
        make_tiny_classifier(tmp_path),
        MRPC,
        TrainerConfig(**settings),
        OptimizationConfig(learning_rate=3e-3),
        output_dir=output,
        progress=False,
    )


def test_tiny_encoder_learns_a_pair_rule(tmp_path):
    trainer = _trainer(tmp_path, output=tmp_path / "run")
    train, dev = trainer.encode(_examples(1024, 1)), trainer.encode(_examples(200, 2))
    assert np.mean(dev.labels) == 0.5
    before = trainer.evaluate(dev)["accuracy"]
    result = trainer.fit(train, dev)
    assert result.best["dev_accuracy"] >= 0.9 > before
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4, 5, 6]
    assert result.steps == 6 * 32
    # The saved model is the best one and gives the same metrics after reloading.
    reloaded = TextClassifier.from_pretrained(tmp_path / "run" / "model")
    reloaded_trainer = Trainer(
        reloaded, MRPC, TrainerConfig(), OptimizationConfig(learning_rate=1e-3), progress=False
    )
    assert reloaded_trainer.evaluate(dev)["accuracy"] == result.best["dev_accuracy"]
    lines = (tmp_path / "run" / "history.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == result.history


def test_same_seed_same_metrics_other_seed_differs(tmp_path):
    def run(seed):
        trainer = _trainer(tmp_path, epochs=2, seed=seed)
        train, dev = trainer.encode(_examples(256, 1)), trainer.encode(_examples(64, 2))
        return trainer.fit(train, dev).history

    first, second, other = run(3), run(3), run(4)
    strip = [{k: v for k, v in r.items() if "second" not in k} for r in first]
    assert strip == [{k: v for k, v in r.items() if "second" not in k} for r in second]
    assert [r["train_loss"] for r in first] != [r["train_loss"] for r in other]


def test_max_steps_mid_epoch_evaluates_at_the_end(tmp_path):
    trainer = _trainer(tmp_path, epochs=3, max_steps=11)
    train, dev = trainer.encode(_examples(256, 1)), trainer.encode(_examples(64, 2))
    result = trainer.fit(train, dev)  # 8 batches per epoch: stops 3 steps into epoch 2
    assert [(r["epoch"], r["step"]) for r in result.history] == [(1, 8), (2, 11)]
    assert "dev_accuracy" in result.history[-1] and "dev_f1" in result.history[-1]
    assert result.history[-1]["learning_rate"] == 0.0  # the schedule decays to 0 at max_steps


def test_fit_leaves_the_callers_optimization_config_as_it_was(tmp_path):
    optimization = OptimizationConfig(learning_rate=3e-3)
    trainer = Trainer(
        make_tiny_classifier(tmp_path),
        MRPC,
        TrainerConfig(epochs=1, batch_size=32, seed=0),
        optimization,
        progress=False,
    )
    result = trainer.fit(trainer.encode(_examples(64, 1)), None)
    assert result.steps == 2
    # The run plans its own horizon; the caller's config (maybe shared by runs) keeps None.
    assert optimization.total_steps is None
    assert optimization == OptimizationConfig(learning_rate=3e-3)


def test_nan_loss_stops_with_the_step(tmp_path):
    trainer = _trainer(tmp_path, epochs=1)
    train = trainer.encode(_examples(64, 1))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Trainer, "_loss", lambda self, logits, labels: logits.sum() * float("nan"))
        with pytest.raises(FloatingPointError, match="step 1"):
            trainer.fit(train, None)


def test_callbacks_see_every_evaluation_and_can_stop_training(tmp_path):
    seen = []

    def stop_at_the_third(evaluation):
        seen.append(evaluation)
        return len(seen) == 3  # asks to stop; None and False let training go on

    trainer = _trainer(tmp_path, output=tmp_path / "run", epochs=3, eval_every_steps=3)
    trainer.callbacks.append(lambda evaluation: None)  # a second callback changes nothing
    trainer.callbacks.append(stop_at_the_third)
    train, dev = trainer.encode(_examples(256, 1)), trainer.encode(_examples(64, 2))
    result = trainer.fit(train, dev)  # 8 steps per epoch: evaluations at 3, 6, 8, 9, ...
    assert [e.step for e in seen] == [r["step"] for r in result.history] == [3, 6, 8]
    assert [e.epoch for e in seen] == [1, 1, 1]
    assert seen[-1].record is result.history[-1] and seen[-1].history == tuple(result.history)
    assert seen[-1].best == result.best
    assert [e.improved for e in seen][0] is True
    assert result.stopped_early and result.steps == 8
    # The run ended as a finished one: its last checkpoint says so, and resume would not go on.
    state = json.loads((tmp_path / "run/checkpoints/step-8/trainer.json").read_text())
    assert state["finished"] is True and state["step"] == 8


def test_a_callback_stopping_inside_an_epoch_ends_the_run_there(tmp_path):
    trainer = _trainer(tmp_path, output=tmp_path / "run", epochs=2, eval_every_steps=3)
    trainer.callbacks.append(lambda evaluation: evaluation.step == 6)
    train, dev = trainer.encode(_examples(256, 1)), trainer.encode(_examples(64, 2))
    result = trainer.fit(train, dev)
    assert result.stopped_early and result.steps == 6
    assert [r["step"] for r in result.history] == [3, 6]  # no end-of-epoch evaluation after it
    assert [r["step"] for r in result.step_records] == list(range(1, 7))
    state = json.loads((tmp_path / "run/checkpoints/step-6/trainer.json").read_text())
    assert state["finished"] is True
    assert not _trainer(tmp_path, epochs=1).fit(train, None).stopped_early


def test_fit_creates_no_attribute_that_init_did_not(tmp_path):
    trainer = _trainer(tmp_path, output=tmp_path / "run", epochs=1)
    before = set(vars(trainer))
    trainer.fit(trainer.encode(_examples(64, 1)), trainer.encode(_examples(16, 2)))
    assert set(vars(trainer)) == before
