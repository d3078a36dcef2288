"""Per-step records (steps.jsonl, always) and TensorBoard event files (by flag)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bertfit.cli import main
from bertfit.data.readers import TextExamples
from bertfit.data.tasks import MRPC
from bertfit.errors import ConfigError
from bertfit.train.config import LoggingConfig, TrainerConfig
from bertfit.train.optim import OptimizationConfig, learning_rate_schedule
from bertfit.train.tracking import RunTracker, read_jsonl, split_metric_key
from bertfit.train.trainer import Trainer

from conftest import make_tiny_classifier, synthetic_pairs, write_synthetic_glue


def read_events(log_dir) -> EventAccumulator:
    events = EventAccumulator(str(log_dir))
    events.Reload()
    return events


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def tensorboard_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tb")
    make_tiny_classifier(root).save_pretrained(root / "tiny")
    write_synthetic_glue(root / "glue", n_train=80, n_dev=32)
    run = root / "run"
    code = main(["train", "--model", str(root / "tiny"), "--data-dir", str(root / "glue"),
                 "--output", str(run), "--epochs", "2", "--batch-size", "16",
                 "--learning-rate", "3e-3", "--max-seq-length", "32", "--quiet",
                 "--tensorboard"])  # fmt: skip
    assert code == 0
    return run


def test_tensorboard_holds_every_step_scalar_of_steps_jsonl(tensorboard_run):
    steps = lines(tensorboard_run / "steps.jsonl")
    assert [r["step"] for r in steps] == list(range(1, 11))  # 2 epochs x 5 batches
    events = read_events(tensorboard_run / "tensorboard")
    for name in ("loss", "learning_rate", "examples_per_second", "grad_norm"):
        scalars = events.Scalars(f"train/{name}")
        assert [e.step for e in scalars] == [r["step"] for r in steps]
        # Event files store float32.
        np.testing.assert_allclose([e.value for e in scalars], [r[name] for r in steps], rtol=1e-6)


def test_tensorboard_holds_the_dev_metrics_of_history_jsonl(tensorboard_run):
    history = lines(tensorboard_run / "history.jsonl")
    events = read_events(tensorboard_run / "tensorboard")
    for metric in ("accuracy", "f1"):
        scalars = events.Scalars(f"dev/{metric}")
        assert [(e.step, pytest.approx(e.value)) for e in scalars] == [
            (r["step"], r[f"dev_{metric}"]) for r in history
        ]
    epoch_loss = events.Scalars("train/epoch_loss")
    assert [e.value for e in epoch_loss] == pytest.approx([r["train_loss"] for r in history])


def test_step_records_are_what_training_used(tensorboard_run):
    config = json.loads((tensorboard_run / "config.json").read_text())
    schedule = learning_rate_schedule(OptimizationConfig.from_dict(config["optimizer"]))
    steps = lines(tensorboard_run / "steps.jsonl")
    # Update k ran with the schedule's rate after k - 1 updates.
    assert [r["learning_rate"] for r in steps] == [schedule(r["step"] - 1) for r in steps]
    assert all(r["grad_norm"] > 0 and r["examples_per_second"] > 0 for r in steps)
    assert all(r["epoch"] == (1 if r["step"] <= 5 else 2) for r in steps)


def test_rerun_with_overwrite_replaces_the_event_files(tensorboard_run):
    config = str(tensorboard_run / "config.json")
    assert main(["train", "--config", config, "--output", str(tensorboard_run), "--overwrite",
                 "--quiet", "--tensorboard", "trainer.max_steps=3"]) == 0  # fmt: skip
    assert len(list((tensorboard_run / "tensorboard").glob("events.out.tfevents.*"))) == 1
    events = read_events(tensorboard_run / "tensorboard")
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3]


def _fit(tmp_path, logging, clip_norm=1.0, output=True, dev=False, **settings):
    trainer = Trainer(
        make_tiny_classifier(tmp_path),
        MRPC,
        TrainerConfig(epochs=2, batch_size=16, seed=0, **settings),
        OptimizationConfig(learning_rate=3e-3, clip_norm=clip_norm),
        output_dir=tmp_path / "run" if output else None,
        progress=False,
        logging=logging,
    )
    columns, labels = synthetic_pairs(72, 1)  # 5 batches an epoch, the last one short
    train = trainer.encode(TextExamples(columns, labels, "synthetic"))
    if dev:
        columns, labels = synthetic_pairs(16, 2)
        dev = trainer.encode(TextExamples(columns, labels, "synthetic"))
    return trainer.fit(train, dev or None)


def test_evaluations_every_n_steps_are_recorded_and_logged(tmp_path):
    result = _fit(tmp_path, LoggingConfig(tensorboard=True), dev=True, eval_every_steps=3)
    # Every 3 steps, and at the end of each epoch (5 steps each).
    assert [(r["epoch"], r["step"]) for r in result.history] == [
        (1, 3), (1, 5), (2, 6), (2, 9), (2, 10)
    ]  # fmt: skip
    losses = [r["loss"] for r in result.step_records]
    windows = [(0, 3), (3, 5), (5, 6), (6, 9), (9, 10)]
    for record, (start, end) in zip(result.history, windows):
        assert record["train_loss"] == pytest.approx(np.mean(losses[start:end]))
    for epoch in (1, 2):  # the windows of an epoch cover its examples once
        assert sum(r["train_examples"] for r in result.history if r["epoch"] == epoch) == 72
    events = read_events(tmp_path / "run" / "tensorboard")
    assert [e.step for e in events.Scalars("dev/accuracy")] == [3, 5, 6, 9, 10]
    assert lines(tmp_path / "run" / "history.jsonl") == result.history


def test_windows_average_the_steps_they_cover(tmp_path):
    every = _fit(tmp_path, LoggingConfig(log_every_steps=1), output=False).step_records
    windows = _fit(tmp_path, LoggingConfig(log_every_steps=3), output=False).step_records
    # Windows end every 3 steps and at each epoch's end.
    assert [r["step"] for r in windows] == [3, 5, 6, 9, 10]
    bounds = [(0, 3), (3, 5), (5, 6), (6, 9), (9, 10)]
    for record, (start, end) in zip(windows, bounds):
        assert record["loss"] == pytest.approx(np.mean([r["loss"] for r in every[start:end]]))
        assert record["learning_rate"] == every[end - 1]["learning_rate"]


def test_no_tensorboard_without_the_flag_and_a_norm_without_clipping(tmp_path):
    result = _fit(tmp_path, None, clip_norm=None)
    assert not (tmp_path / "run" / "tensorboard").exists()
    assert read_jsonl(tmp_path / "run" / "steps.jsonl") == result.step_records
    assert all(r["grad_norm"] > 0 for r in result.step_records)


def test_missing_tensorboard_package_is_a_clear_error(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name == "torch.utils.tensorboard":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(ConfigError, match="pip install tensorboard"):
        RunTracker(tmp_path, LoggingConfig(tensorboard=True))


def test_a_line_cut_short_by_a_crash_is_skipped_but_a_bad_one_inside_is_not(tmp_path):
    log = tmp_path / "steps.jsonl"
    log.write_text('{"step": 1}\n{"step": 2}\n{"ste')
    assert read_jsonl(log) == [{"step": 1}, {"step": 2}]
    log.write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(ConfigError, match="steps.jsonl:2"):
        read_jsonl(log)


def test_metric_keys_are_split_by_the_tasks_metric_names():
    names = ("accuracy", "f1")
    assert split_metric_key("dev_accuracy", names) == ("dev", "accuracy")
    assert split_metric_key("dev_matched_accuracy", names) == ("dev_matched", "accuracy")
    assert split_metric_key("train_loss", names) is None
    assert split_metric_key("accuracy", names) is None
