"""``bertfit tune``: the space, fixed flags, the outputs, restarts, pruning, and bad input.

Trials train the tiny 2-layer classifier on a few synthetic pairs for two or three steps, so
a trial takes seconds; the two-worker PostgreSQL test is in tests/test_tune_postgres.py.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from bertfit.cli import main
from bertfit.errors import ConfigError
from bertfit.train.callbacks import Evaluation
from bertfit.train.config import RunConfig
from bertfit.tune import study as tune_study
from bertfit.tune.objective import ReportEvaluations
from bertfit.tune.space import default_space, read_space
from bertfit.tune.storage import OutputLock

from conftest import make_tiny_classifier, write_synthetic_glue

SPACE = """\
optimizer:
  learning_rate: {low: 1e-3, high: 3e-2, log: true}
optimizer.warmup_fraction: {low: 0.0, high: 0.2}
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    """Synthetic MRPC pairs, the tiny model and a two-key space file."""
    root = tmp_path_factory.mktemp("tune")
    write_synthetic_glue(root / "glue", n_train=32, n_dev=16)
    make_tiny_classifier(root).save_pretrained(root / "tiny")
    (root / "space.yaml").write_text(SPACE, encoding="utf-8")
    return {"root": root, "glue": root / "glue", "model": root / "tiny"}


def tune_args(setup, output: Path, *extra: str, space: bool = True) -> list[str]:
    args = ["tune", "--task", "mrpc", "--output", str(output), "--data-dir", str(setup["glue"]),
            "--model", str(setup["model"]), "--max-seq-length", "32", "--precision", "fp32",
            "--batch-size", "16", "--max-steps", "2", "--quiet"]  # fmt: skip
    if space:
        args += ["--space", str(setup["root"] / "space.yaml")]
    return args + list(extra)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def weight_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.safetensors")) + sorted(folder.rglob("*.pt"))


def one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# -- the space ----------------------------------------------------------------------------------


def test_a_space_file_reads_dotted_and_nested_keys_ranges_and_choices(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(
        SPACE + "trainer.epochs: {low: 2, high: 5}\ntrainer:\n  batch_size: {choices: [8, 16]}\n"
        "optimizer.weight_decay: {low: 0, high: 0.1, step: 0.05}\n",
        encoding="utf-8",
    )
    space = read_space(path)
    params = {param.key: param for param in space.params}
    assert list(params) == [
        "optimizer.learning_rate",
        "optimizer.warmup_fraction",
        "trainer.epochs",
        "trainer.batch_size",
        "optimizer.weight_decay",
    ]
    rate = params["optimizer.learning_rate"]
    assert (rate.low, rate.high, rate.log, rate.integer) == (1e-3, 3e-2, True, False)
    assert params["trainer.epochs"].integer and params["trainer.epochs"].high == 5
    assert params["trainer.batch_size"].choices == (8, 16)
    assert params["optimizer.weight_decay"].step == 0.05
    trial = optuna.create_study().ask()
    values = space.suggest(trial)
    assert isinstance(values["trainer.epochs"], int) and 2 <= values["trainer.epochs"] <= 5
    assert 1e-3 <= values["optimizer.learning_rate"] <= 3e-2
    assert values["trainer.batch_size"] in (8, 16)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("optimizer.lerning_rate: {low: 1e-5, high: 1e-4}\n",
         r"line 1: unknown key 'optimizer.lerning_rate' \(did you mean 'optimizer.learning_rate'"),
        ("trainer.epochs: {low: 2, high: 5}\ntrainer.epochs_x: {low: 2, high: 5}\n",
         r"line 2: unknown key 'trainer.epochs_x'"),
        ("trainer.epochs: {low: 5, high: 2}\n", r"trainer.epochs: empty range \(low 5 is not"),
        ("trainer.epochs: {low: 3, high: 3}\n", r"trainer.epochs: empty range"),
        ("trainer.batch_size: {choices: []}\n", r"trainer.batch_size: empty choices"),
        ("trainer.epochs: {low: 2.5, high: 4}\n", r"low must be a whole number"),
        ("optimizer.weight_decay: {low: 0, high: 0.1, log: true}\n", r"log scale needs low above"),
        ("trainer.epochs: 3\n", r"expected a range"),
        ("truncator: {low: 1, high: 2}\n", r"not a number; search it with choices"),
        ("trainer.epochs: {lo: 1, high: 2}\n", r"unknown field 'lo'"),
        ("", r"an empty space"),
    ],
)  # fmt: skip
def test_bad_space_files_name_the_file_line_and_key(tmp_path, text, message):
    path = tmp_path / "space.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as caught:
        read_space(path)
    assert str(path) in str(caught.value)


def test_a_bound_the_run_config_refuses_is_refused_before_any_trial(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("optimizer.warmup_fraction: {low: 0.0, high: 1.0}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"optimizer.warmup_fraction: 1.0 is refused: .*\[0, 1\)"):
        read_space(path).check(RunConfig(), str(path))


def test_fixed_keys_and_shadowed_keys_leave_the_space():
    config = RunConfig()
    space, dropped = default_space(6).without(["trainer.batch_size", "trainer.seed"], config)
    assert "trainer.batch_size" not in space.keys and dropped == ["trainer.batch_size"]
    assert "optimizer.warmup_fraction" in space.keys
    config.optimizer.warmup_steps = 10  # warmup steps make the fraction meaningless
    space, dropped = default_space(6).without([], config)
    assert dropped == ["optimizer.warmup_fraction"]
    assert default_space(1).params[-1].high == 1  # no more layers re-initialized than exist


# -- bad input on the command line ---------------------------------------------------------------


def test_bad_input_exits_2_with_one_line(setup, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer.epochs: {low: 4, high: 2}\n", encoding="utf-8")
    cases = [
        (tune_args(setup, tmp_path / "a", space=False) + ["--space", str(bad)], "empty range"),
        (tune_args(setup, tmp_path / "b", "--storage", "postgresql://bertfit@127.0.0.1:1/x"),
         "storage postgresql+psycopg://bertfit@127.0.0.1:1/x: cannot open it"),
        (tune_args(setup, tmp_path / "c", "--storage", "nosuchdb://x"), "cannot open it"),
        (tune_args(setup, tmp_path / "d", "--resume", "x"), "tune does not take --resume"),
        (tune_args(setup, tmp_path / "e", "--space", str(tmp_path / "none.yaml")),
         "space file not found"),
        (tune_args(setup, tmp_path / "f", "--max-seq-length", "32") + ["--task", "nosuchtask"],
         "nosuchtask"),
    ]  # fmt: skip
    for args, message in cases:
        assert main(args) == 2, args
        line = one_error_line(capsys)
        assert line.startswith("bertfit: error: ") and message in line, line
    reinit = tmp_path / "reinit.yaml"
    reinit.write_text("reinit_layers: {low: 0, high: 3}\n", encoding="utf-8")
    assert main(tune_args(setup, tmp_path / "g", space=False) + ["--space", str(reinit)]) == 2
    assert "the model has 2 layers" in one_error_line(capsys)
    # A space whose every key is fixed by a flag has nothing to search.
    args = tune_args(setup, tmp_path / "h", "--learning-rate", "1e-3") + [
        "optimizer.warmup_fraction=0.1"
    ]
    assert main(args) == 2
    assert "nothing to search" in one_error_line(capsys)


def test_a_second_process_on_the_same_output_is_refused(setup, tmp_path, capsys):
    lock = OutputLock(tmp_path / "out")
    lock.acquire()
    try:
        assert main(tune_args(setup, tmp_path / "out", "--trials", "1")) == 2
        assert "in use by another bertfit tune" in one_error_line(capsys)
    finally:
        lock.release()


def test_without_optuna_tune_names_the_extra(tmp_path):
    script = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'optuna' or name.startswith('optuna.'):\n"
        "            raise ImportError('blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from bertfit.cli import main\n"
        f"sys.exit(main(['tune', '--output', {str(tmp_path / 'out')!r}, '--trials', '1']))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "bertfit: error: bertfit tune needs Optuna: pip install 'bertfit[tune]'"
    )


# -- a search and what it leaves -----------------------------------------------------------------


@pytest.fixture(scope="module")
def searched(setup):
    """A finished three-trial search (batch size, max steps fixed by flags)."""
    output = setup["root"] / "search"
    assert main(tune_args(setup, output, "--trials", "3", "--seeds", "1,2")) == 0
    return output


def test_trials_csv_lists_every_trial_with_its_state_value_and_params(searched):
    rows = read_csv(searched / "trials.csv")
    assert list(rows[0]) == ["number", "state", "value", "optimizer.learning_rate",
                             "optimizer.warmup_fraction", "seconds"]  # fmt: skip
    assert [row["number"] for row in rows] == ["0", "1", "2"]
    assert all(row["state"] == "COMPLETE" for row in rows)
    for row in rows:
        assert 1e-3 <= float(row["optimizer.learning_rate"]) <= 3e-2
        assert float(row["seconds"]) > 0
        summary = json.loads((searched / "trials" / row["number"] / "summary.json").read_text())
        mean = summary["metrics"]["dev_accuracy"]["mean"]
        assert float(row["value"]) == pytest.approx(mean)  # the mean over both seeds
    # Trial 0 is the starting recipe: MRPC's learning rate is outside this space, its warmup in.
    assert float(rows[0]["optimizer.warmup_fraction"]) == 0.06


def test_trials_are_scored_by_the_main_metric_the_run_names(setup, tmp_path):
    """--main-metric f1 picks each run's best model by F1, so the trial's value is F1 too."""
    output = tmp_path / "by-f1"
    args = tune_args(setup, output, "--trials", "2", "--main-metric", "f1")
    assert main(args) == 0
    for row in read_csv(output / "trials.csv"):
        results = json.loads((output / "trials" / row["number"] / "results.json").read_text())
        assert float(row["value"]) == pytest.approx(results["best"]["dev_f1"])
        assert results["best"]["dev_f1"] != pytest.approx(results["best"]["dev_accuracy"])


def test_flags_are_fixed_for_every_trial(searched):
    for number in range(3):
        for seed in (1, 2):
            config = json.loads((searched / "trials" / str(number) / f"seed-{seed}" /
                                 "config.json").read_text())  # fmt: skip
            assert config["trainer"]["batch_size"] == 16
            assert config["trainer"]["max_steps"] == 2
            assert config["trainer"]["seed"] == seed
            assert config["trainer"]["save_checkpoints"] is False


def test_only_the_best_trials_model_is_kept_with_its_card(searched):
    rows = read_csv(searched / "trials.csv")
    best = max(rows, key=lambda row: (float(row["value"]), -int(row["number"])))
    assert weight_files(searched) == [searched / "best" / "model" / "model.safetensors"]
    kept = json.loads((searched / "best" / "trial.json").read_text())
    assert kept["trial"] == int(best["number"])
    assert (searched / "best" / "model" / "README.md").is_file()
    # Every trial keeps its config, results and timings.
    for row in rows:
        for seed in (1, 2):
            run = searched / "trials" / row["number"] / f"seed-{seed}"
            assert {"config.json", "results.json", "timings.json"} <= {
                p.name for p in run.iterdir()
            }


def test_best_yaml_trains_unchanged_into_the_best_trials_config(searched, tmp_path):
    rows = read_csv(searched / "trials.csv")
    best = max(rows, key=lambda row: (float(row["value"]), -int(row["number"])))
    text = (searched / "best.yaml").read_text()
    assert f"trial {best['number']}" in text.splitlines()[0]
    run = tmp_path / "again"
    code = main(["train", "--config", str(searched / "best.yaml"), "--output", str(run),
                 "--seed", "1", "--quiet"])  # fmt: skip
    assert code == 0
    trained = json.loads((run / "config.json").read_text())
    trial = json.loads(
        (searched / "trials" / best["number"] / "seed-1" / "config.json").read_text()
    )
    assert trial["trainer"].pop("save_checkpoints") is False  # trials write no checkpoints
    assert trained["trainer"].pop("save_checkpoints") is True
    assert trained == trial
    assert trained["optimizer"]["learning_rate"] == float(best["optimizer.learning_rate"])


def test_plot_tune_draws_history_and_importances(searched, tmp_path):
    image, data_file = tmp_path / "tune.png", tmp_path / "tune.json"
    assert main(["plot", "tune", str(searched), "-o", str(image), "--data", str(data_file)]) == 0
    data = json.loads(data_file.read_text())
    rows = read_csv(searched / "trials.csv")
    assert data["numbers"] == [0, 1, 2]
    assert data["values"] == pytest.approx([float(row["value"]) for row in rows])
    values = [float(row["value"]) for row in rows]
    assert data["best_so_far"] == pytest.approx([max(values[: i + 1]) for i in range(3)])
    if len(set(values)) > 1:
        assert set(data["importances"]) == {"optimizer.learning_rate", "optimizer.warmup_fraction"}
    else:
        assert data["importances"] is None and "same value" in data["note"]
    assert image.stat().st_size > 0


def test_the_same_command_continues_the_study_to_its_total(setup, tmp_path, capsys):
    output = tmp_path / "out"
    assert main(tune_args(setup, output, "--trials", "1")) == 0
    assert [row["number"] for row in read_csv(output / "trials.csv")] == ["0"]
    assert main(tune_args(setup, output, "--trials", "2")) == 0
    rows = read_csv(output / "trials.csv")
    assert [(row["number"], row["state"]) for row in rows] == [("0", "COMPLETE"), ("1", "COMPLETE")]
    capsys.readouterr()
    assert main(tune_args(setup, output, "--trials", "2")) == 0
    assert "already has 2 trials of 2; nothing to run" in capsys.readouterr().out
    assert len(read_csv(output / "trials.csv")) == 2
    # Other settings in the same study are refused rather than mixed in.
    assert main(tune_args(setup, output, "--trials", "3", "--seeds", "1,2")) == 2
    assert "searches other settings (seeds differs)" in one_error_line(capsys)


def test_a_trial_left_running_by_a_killed_tune_is_failed_and_not_counted(setup, tmp_path, capsys):
    output = tmp_path / "out"
    output.mkdir()
    study = optuna.create_study(
        storage=f"sqlite:///{output / 'study.db'}", study_name="out", direction="maximize"
    )
    left = study.ask()  # as a killed process leaves it: RUNNING for ever
    left.suggest_float("optimizer.learning_rate", 1e-3, 3e-2, log=True)
    assert main(tune_args(setup, output, "--trials", "1")) == 0
    assert "trial 0 was left running by a stopped tune: marked FAIL" in capsys.readouterr().out
    rows = read_csv(output / "trials.csv")
    assert [(row["number"], row["state"]) for row in rows] == [("0", "FAIL"), ("1", "COMPLETE")]
    assert rows[0]["value"] == ""


# -- pruning --------------------------------------------------------------------------------------


def test_the_pruner_never_stops_a_trial_at_its_first_evaluation():
    study = optuna.create_study(direction="maximize", pruner=tune_study.pruner())
    for _ in range(tune_study.STARTUP_TRIALS):
        trial = study.ask()
        trial.report(0.9, 1)
        trial.report(0.9, 2)
        study.tell(trial, 0.9)
    hopeless = study.ask()
    hopeless.report(0.1, 1)
    assert not hopeless.should_prune()  # the first evaluation: never
    hopeless.report(0.1, 2)
    assert hopeless.should_prune()  # the second, below the median: pruned


def test_evaluations_report_their_main_metric_by_number():
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    report = ReportEvaluations(trial)
    history = []
    for step, value in ((4, 0.6), (8, 0.7)):
        record = {"step": step, "dev_accuracy": value, "dev_f1": 0.1}
        history.append(record)
        evaluation = Evaluation(step, 1, record, tuple(history), record, True, "dev_accuracy")
        assert report(evaluation) is None
    assert trial.storage.get_trial(trial._trial_id).intermediate_values == {1: 0.6, 2: 0.7}


def test_a_pruned_trial_stops_after_an_evaluation_and_keeps_no_weights(
    setup, tmp_path, monkeypatch
):
    # A pruner that prunes whatever it sees, from the first evaluation: the trial still trains
    # until its first evaluation, and stops right there.
    monkeypatch.setattr(tune_study, "pruner", lambda: optuna.pruners.ThresholdPruner(lower=2.0))
    output = tmp_path / "out"
    args = tune_args(setup, output, "--trials", "2", "--eval-every-steps", "1")
    args[args.index("--max-steps") + 1] = "3"
    assert main(args) == 0
    rows = read_csv(output / "trials.csv")
    assert [row["state"] for row in rows] == ["PRUNED", "PRUNED"]
    for row in rows:
        run = output / "trials" / row["number"]
        history = (run / "history.jsonl").read_text().splitlines()
        assert len(history) == 1  # pruned at its first evaluation, not before, not after
        assert float(row["value"]) == json.loads(history[0])["dev_accuracy"]
        assert "pruned by the search" in json.loads((run / "results.json").read_text())[
            "stopped_early"]["reason"]  # fmt: skip
    assert weight_files(output) == []  # no complete trial: no model kept
    assert not (output / "best.yaml").exists()


def test_tune_help_lists_the_search_flags_and_trains_flags():
    result = subprocess.run(
        [sys.executable, "-m", "bertfit", "tune", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0
    flags = ["--trials", "--timeout", "--space", "--storage", "--study", "--seeds",
             "--learning-rate", "--layer-decay", "--reinit-layers", "--train", "--dev"]  # fmt: skip
    for flag in flags:
        assert flag in result.stdout
    # Flags that continue, replace or shard one run are refused by tune, so not offered.
    for flag in ["--resume", "--resume-if-exists", "--overwrite", "--fsdp"]:
        assert f"{flag} " not in result.stdout and f"{flag}\n" not in result.stdout
