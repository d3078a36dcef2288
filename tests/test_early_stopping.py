"""Early stopping: the callback's rule, the flags and config keys, the run's record of where and
why it stopped, and resume (of a run that stopped, and of one stopped before it would)."""

from __future__ import annotations

import json
import math

import pytest

from bertfit.cli import main
from bertfit.data.readers import TextExamples
from bertfit.data.tasks import MRPC
from bertfit.errors import ConfigError
from bertfit.train.callbacks import EarlyStopping, Evaluation, asked_to_stop
from bertfit.train.config import RunConfig, TrainerConfig
from bertfit.train.optim import OptimizationConfig
from bertfit.train.trainer import Trainer

from conftest import make_tiny_classifier, synthetic_pairs, write_synthetic_glue

KEY = "dev_accuracy"


def _evaluations(values: list[float]) -> list[Evaluation]:
    """The evaluation after each of ``values`` (steps 2, 4, ...), each with its history."""
    history = [{"epoch": 1, "step": 2 * (i + 1), KEY: value} for i, value in enumerate(values)]
    return [
        Evaluation(record["step"], 1, record, tuple(history[: i + 1]), None, False)
        for i, record in enumerate(history)
    ]


def _answers(callback, values: list[float]) -> list[str | None]:
    return [callback(evaluation) for evaluation in _evaluations(values)]


# -- the rule -------------------------------------------------------------------------------------


def test_it_stops_after_patience_evaluations_without_a_new_best():
    answers = _answers(EarlyStopping(KEY, patience=2), [0.5, 0.6, 0.6, 0.55, 0.7])
    assert answers[:3] == [None, None, None]  # a tie is no improvement: one so far
    assert answers[3] == "dev_accuracy did not improve in 2 evaluations (best 0.6000 at step 4)"
    # Patience 1 stops at the first evaluation that is not better.
    assert _answers(EarlyStopping(KEY, patience=1), [0.5, 0.7, 0.7])[1:] == [
        None,
        "dev_accuracy did not improve in 1 evaluation (best 0.7000 at step 4)",
    ]


def test_an_improvement_must_beat_the_best_before_it_by_more_than_delta():
    values = [0.5, 0.52, 0.54, 0.7]
    assert _answers(EarlyStopping(KEY, patience=2), values) == [None] * 4
    answers = _answers(EarlyStopping(KEY, patience=2, delta=0.05), values)
    # Each step is 0.02 over the best before it (which still moves): no improvement twice.
    assert answers[:2] == [None, None]
    assert answers[2] == (
        "dev_accuracy did not improve by more than 0.05 in 2 evaluations (best 0.5400 at step 6)"
    )
    # A big enough gain resets the count.
    assert _answers(EarlyStopping(KEY, 2, 0.05), [0.5, 0.52, 0.6, 0.61])[2:] == [None, None]


def test_an_evaluation_without_the_metric_counts_as_no_improvement():
    answers = _answers(EarlyStopping(KEY, patience=2), [math.nan, math.nan])
    assert answers == [None, "dev_accuracy did not improve in 2 evaluations (no value yet)"]


def test_callbacks_give_their_reason_or_a_plain_one():
    evaluation = _evaluations([0.5])[0]
    assert asked_to_stop([lambda e: None, lambda e: False], evaluation, "cpu") is None
    assert asked_to_stop([lambda e: True], evaluation, "cpu") == "a callback asked to stop"
    seen = []
    callbacks = [lambda e: "enough", lambda e: seen.append(e) or "later"]
    assert asked_to_stop(callbacks, evaluation, "cpu") == "enough"
    assert seen == [evaluation]  # every callback still sees the evaluation


# -- config and flags -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"early_stopping_patience": 0}, "trainer.early_stopping_patience must be positive"),
        ({"early_stopping_delta": -0.1}, "trainer.early_stopping_delta must be 0 or more"),
        ({"early_stopping_delta": math.inf}, "trainer.early_stopping_delta must be 0 or more"),
    ],
)
def test_bad_settings_name_the_key(settings, message):
    with pytest.raises(ConfigError, match=message):
        TrainerConfig(**settings).validate()


def test_config_files_set_the_keys():
    config = RunConfig.from_dict(
        {"trainer": {"early_stopping_patience": 2, "early_stopping_delta": 0}}  # a YAML 0
    )
    config.validate()
    assert config.trainer.early_stopping_patience == 2
    assert config.trainer.early_stopping_delta == 0


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--early-stopping-patience", "0", "must be positive"),
        ("--early-stopping-delta", "-1", "must be 0 or more"),
        ("--eval-every-steps", "0", "must be positive"),
    ],
)
def test_bad_flags_are_one_line(tmp_path, capsys, flag, value, message):
    with pytest.raises(SystemExit) as stopped:  # argparse's own exit
        main(["train", "--task", "mrpc", "--output", str(tmp_path / "r"), flag, value])
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert flag in error and message in error
    assert not (tmp_path / "r").exists()


def test_early_stopping_without_a_dev_set_is_one_line(tmp_path, capsys):
    train = tmp_path / "train.csv"
    train.write_text("text,label\n" + "".join(f"row {i},{'ab'[i % 2]}\n" for i in range(16)))
    make_tiny_classifier(tmp_path).save_pretrained(tmp_path / "tiny")
    run = tmp_path / "run"
    args = ["train", "--train", str(train), "--text-a", "text", "--model", str(tmp_path / "tiny")]
    args += ["--output", str(run), "--early-stopping-patience", "2", "--quiet"]
    assert main(args) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [
        "bertfit: error: trainer.early_stopping_patience needs a dev set to watch (--dev or "
        "data.dev_file)"
    ]
    assert not run.exists()


# -- a run that stops -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory) -> dict:
    """A run that can never improve by more than 1: evaluations at steps 2, 4, 6 (8 steps an
    epoch), so with patience 2 it stops at step 6, inside its first of 3 epochs."""
    root = tmp_path_factory.mktemp("early")
    glue = write_synthetic_glue(root / "glue", n_train=64, n_dev=32)
    make_tiny_classifier(root).save_pretrained(root / "tiny")
    run = root / "run"
    args = ["train", "--task", "mrpc", "--data-dir", str(glue), "--model", str(root / "tiny")]
    args += ["--output", str(run), "--epochs", "3", "--batch-size", "8", "--max-seq-length", "32"]
    args += ["--precision", "fp32", "--learning-rate", "3e-3", "--quiet", "--eval-every-steps"]
    args += ["2", "--early-stopping-patience", "2", "--early-stopping-delta", "1"]
    return {"run": run, "args": args}


def test_the_run_stops_and_says_where_and_why(stopped_run, capsys):
    run = stopped_run["run"]
    assert main(stopped_run["args"]) == 0
    out = capsys.readouterr().out
    results = json.loads((run / "results.json").read_text())
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [record["step"] for record in history] == [2, 4, 6]
    best = max(history, key=lambda record: record[KEY])  # the first of equals
    reason = (
        f"dev_accuracy did not improve by more than 1 in 2 evaluations (best {best[KEY]:.4f} "
        f"at step {best['step']})"
    )
    assert results["stopped_early"] == {"step": 6, "epoch": 1, "reason": reason}
    assert results["steps"] == 6 and results["best"] == best
    assert f"stopped early at step 6 (epoch 1): {reason}\n" in out
    trainer = json.loads((run / "config.json").read_text())["trainer"]
    assert trainer["early_stopping_patience"] == 2 and trainer["early_stopping_delta"] == 1.0
    assert trainer["eval_every_steps"] == 2
    # The run is finished: its last checkpoint says so, and resume says why it stopped.
    state = json.loads((run / "checkpoints/step-6/trainer.json").read_text())
    assert state["finished"] is True and state["stopped"] == results["stopped_early"]
    assert main(["train", "--resume", str(run)]) == 0
    said = capsys.readouterr().out
    assert f"already finished (6 steps; stopped early at step 6 (epoch 1): {reason})" in said


def test_a_run_resumed_before_the_stop_stops_where_it_would_have(tmp_path):
    """The callback reads the restored history, so the evaluations before a resume count."""

    def trainer() -> Trainer:
        config = TrainerConfig(
            epochs=3, batch_size=8, seed=0, eval_every_steps=2, checkpoint_every_steps=4
        )
        return Trainer(
            make_tiny_classifier(tmp_path),
            MRPC,
            config,
            OptimizationConfig(learning_rate=3e-3),
            output_dir=tmp_path / "run",
            progress=False,
            callbacks=[EarlyStopping(KEY, patience=2, delta=1.0)],
        )

    first = trainer()
    (a, b), labels = synthetic_pairs(64, 1)
    train = first.encode(TextExamples([a, b], labels, "train"))
    (a, b), labels = synthetic_pairs(32, 2)
    dev = first.encode(TextExamples([a, b], labels, "dev"))
    whole = first.fit(train, dev)
    assert whole.stopped_early and whole.steps == 6
    assert whole.stopped == {"step": 6, "epoch": 1, "reason": whole.stopped["reason"]}
    # From step 4 (one evaluation without improvement behind it), one more stops it again.
    resumed = trainer().fit(train, dev, resume=tmp_path / "run/checkpoints/step-4")
    assert [r["step"] for r in resumed.history] == [2, 4, 6]
    assert resumed.stopped == whole.stopped and resumed.steps == 6
