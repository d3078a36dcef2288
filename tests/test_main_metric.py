"""trainer.main_metric (--main-metric): the dev metric that picks the best model and that early
stopping watches. The runs here score each evaluation with scripted metrics, so that accuracy
and F1 disagree on the best evaluation and the choice can only follow the named one."""

from __future__ import annotations

import json
import shutil

import pytest

from bertfit.cli import main
from bertfit.data.tasks import MRPC
from bertfit.data.user_files import Columns, build_user_task
from bertfit.errors import ConfigError
from bertfit.problem import MULTI_LABEL
from bertfit.train.config import TrainerConfig

from conftest import make_tiny_classifier, write_synthetic_glue

# One evaluation each (steps 2, 4, 6, 8): accuracy is best at step 6, F1 at step 4.
ACCURACY = [0.9, 0.1, 0.95, 0.3]
F1 = [0.2, 0.9, 0.5, 0.4]
# A checkpoint at each evaluation, all kept: the test resumes from one in the middle.
KEEP_ALL = ("--checkpoint-every", "2", "--keep-checkpoints", "4")


def test_the_task_default_or_the_named_metric():
    assert TrainerConfig().main_metric_of(MRPC) == "accuracy"
    assert TrainerConfig(main_metric="f1").main_metric_of(MRPC) == "f1"
    tags = build_user_task(Columns("text", None, "tags"), MULTI_LABEL, ("a", "b", "c"))
    assert TrainerConfig().main_metric_of(tags) == "micro_f1"
    assert TrainerConfig(main_metric="macro_f1").main_metric_of(tags) == "macro_f1"
    with pytest.raises(ConfigError) as error:
        TrainerConfig(main_metric="micro_f1").main_metric_of(MRPC)
    assert str(error.value) == (
        "trainer.main_metric: mrpc has no metric 'micro_f1'; choose one of accuracy, f1"
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("main-metric")
    glue = write_synthetic_glue(root / "glue", n_train=64, n_dev=32)
    make_tiny_classifier(root).save_pretrained(root / "tiny")
    return root, glue


def _args(setup, run, *extra: str) -> list[str]:
    root, glue = setup
    args = ["train", "--task", "mrpc", "--data-dir", str(glue), "--model", str(root / "tiny")]
    args += ["--output", str(run), "--epochs", "1", "--batch-size", "8", "--max-seq-length"]
    args += ["32", "--precision", "fp32", "--quiet", "--eval-every-steps", "2"]
    return [*args, *extra]


@pytest.fixture
def scripted(monkeypatch):
    """Score the run's evaluations, in order, with the values set in the returned list."""
    values: list[tuple[float, float]] = []

    def compute_metrics(names, predictions, labels):
        accuracy, f1 = values.pop(0)
        return {"accuracy": accuracy, "f1": f1}

    monkeypatch.setattr("bertfit.train.trainer.compute_metrics", compute_metrics)
    return values


def _results(run) -> dict:
    return json.loads((run / "results.json").read_text())


def test_the_best_model_follows_the_named_metric_and_resume_keeps_it(setup, scripted, tmp_path):
    scripted[:] = list(zip(ACCURACY, F1))
    default = tmp_path / "default"
    assert main(_args(setup, default)) == 0
    assert _results(default)["best"]["step"] == 6  # the task's accuracy
    config = json.loads((default / "config.json").read_text())
    assert config["trainer"]["main_metric"] == "accuracy"  # resolved, as the run used it

    scripted[:] = list(zip(ACCURACY, F1))
    run = tmp_path / "f1"
    assert main(_args(setup, run, "--main-metric", "f1", *KEEP_ALL)) == 0
    best = _results(run)["best"]
    assert (best["step"], best["dev_f1"], best["dev_accuracy"]) == (4, 0.9, 0.1)
    assert json.loads((run / "config.json").read_text())["trainer"]["main_metric"] == "f1"
    assert "the best by F1" in (run / "model" / "README.md").read_text()

    # Resumed from step 4, the evaluations at 6 and 8 must not displace step 4's, although
    # step 6's accuracy beats it: the resumed run reads the metric from its config.json.
    for step in (6, 8):
        shutil.rmtree(run / "checkpoints" / f"step-{step}")
    (run / "results.json").unlink()
    scripted[:] = list(zip(ACCURACY, F1))[2:]
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert not scripted  # both evaluations after step 4 ran
    assert _results(run)["best"] == best


def test_early_stopping_watches_the_named_metric(setup, scripted, tmp_path):
    scripted[:] = list(zip(ACCURACY, F1))
    run = tmp_path / "run"
    assert main(_args(setup, run, "--main-metric", "f1", "--early-stopping-patience", "1")) == 0
    assert _results(run)["stopped_early"] == {
        "step": 6,
        "epoch": 1,
        "reason": "dev_f1 did not improve in 1 evaluation (best 0.9000 at step 4)",
    }
    # Watching accuracy, the same scores stop it one evaluation earlier.
    scripted[:] = list(zip(ACCURACY, F1))
    other = tmp_path / "accuracy"
    assert main(_args(setup, other, "--early-stopping-patience", "1")) == 0
    assert _results(other)["stopped_early"]["step"] == 4


def test_a_metric_the_task_lacks_is_one_line(setup, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(_args(setup, run, "--main-metric", "pearson")) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [
        "bertfit: error: trainer.main_metric: mrpc has no metric 'pearson'; "
        "choose one of accuracy, f1"
    ]
    assert not run.exists()


def test_config_keys_lists_it(capsys):
    assert main(["config", "keys"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("trainer.main_"))
    assert line.split() == ["trainer.main_metric", "str", "|", "None", "null"]


def test_a_run_recorded_before_the_key_existed_is_restarted_as_the_same_run(setup, tmp_path):
    run = tmp_path / "run"
    args = [*_args(setup, run, "--max-steps", "2"), "--resume-if-exists"]
    assert main(args) == 0
    config_file = run / "config.json"
    config = json.loads(config_file.read_text())
    del config["trainer"]["main_metric"]  # as a run of an earlier bertfit wrote it
    config_file.write_text(json.dumps(config))
    assert main(args) == 0  # not "a run of another config": it finished, nothing to resume
    assert main([*args, "--main-metric", "f1"]) == 2  # another metric is another run
