"""Two ``bertfit tune`` workers share one study through a real PostgreSQL server (a cluster of
the test's own, see tests/postgres.py): the trials add up to ``--trials``, none runs twice,
and ``best.yaml`` holds the best trial; a dead worker's trial is failed and retried."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings

import optuna
import pytest
import yaml

from bertfit.cli import main
from bertfit.tune import storage as tune_storage
from bertfit.tune.storage import open_storage, storage_url

from conftest import make_tiny_classifier, write_synthetic_glue
from postgres import SKIP_VARIABLE, missing_postgres, postgres_server

pytestmark = pytest.mark.slow

SPACE = "optimizer.learning_rate: {low: 1e-3, high: 3e-2, log: true}\n"


@pytest.fixture(scope="module")
def postgres_url():
    """A running PostgreSQL cluster's URL; a missing server fails unless skipping is asked."""
    why = missing_postgres()
    if why is not None:
        if os.environ.get(SKIP_VARIABLE) == "1":
            pytest.skip(why)
        pytest.fail(why)
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune-pg")
    write_synthetic_glue(root / "glue", n_train=32, n_dev=16)
    make_tiny_classifier(root).save_pretrained(root / "tiny")
    (root / "space.yaml").write_text(SPACE, encoding="utf-8")
    return root


def tune_command(root, output, url, study, trials) -> list[str]:
    return [sys.executable, "-m", "bertfit", "tune", "--task", "mrpc", "--output", str(output),
            "--data-dir", str(root / "glue"), "--model", str(root / "tiny"),
            "--max-seq-length", "32", "--precision", "fp32", "--batch-size", "16",
            "--max-steps", "2", "--quiet", "--space", str(root / "space.yaml"),
            "--storage", url, "--study", study, "--trials", str(trials)]  # fmt: skip


def load(url: str, name: str):
    return optuna.load_study(study_name=name, storage=open_storage(storage_url(url, None), False))


def test_two_workers_share_one_study_and_its_budget(setup, postgres_url, tmp_path):
    outputs = [tmp_path / "worker-a", tmp_path / "worker-b"]
    workers = [
        subprocess.Popen(
            tune_command(setup, output, postgres_url, "shared", 5),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for output in outputs
    ]
    logs = [worker.communicate(timeout=600)[0] for worker in workers]
    for worker, log in zip(workers, logs):
        assert worker.returncode == 0, log
    study = load(postgres_url, "shared")
    state = optuna.trial.TrialState
    finished = study.get_trials(states=(state.COMPLETE, state.PRUNED))
    assert len(finished) == 5  # the budget is the study's, not each worker's
    # Each finished trial ran in exactly one worker's folder, and no two tried the same values.
    ran = {output.name: {int(p.name) for p in (output / "trials").iterdir()} for output in outputs}
    assert all(ran.values()), ran  # both workers took trials
    assert not (ran["worker-a"] & ran["worker-b"])
    numbers = {trial.number for trial in finished}
    assert numbers <= ran["worker-a"] | ran["worker-b"]
    params = [tuple(sorted(trial.params.items())) for trial in finished]
    assert len(set(params)) == len(params)
    # The worker that finished last wrote best.yaml from the whole study.
    best = max(
        (t for t in finished if t.state == state.COMPLETE), key=lambda t: (t.value, -t.number)
    )
    last = max(outputs, key=lambda output: (output / "best.yaml").stat().st_mtime)
    config = yaml.safe_load((last / "best.yaml").read_text())
    assert config["optimizer"]["learning_rate"] == best.params["optimizer.learning_rate"]
    holder = next(o for o in outputs if best.number in ran[o.name])
    assert yaml.safe_load((holder / "best" / "trial.json").read_text())["trial"] == best.number


def test_a_dead_workers_trial_is_failed_and_retried(setup, postgres_url, tmp_path, monkeypatch):
    monkeypatch.setattr(tune_storage, "HEARTBEAT_SECONDS", 1)
    monkeypatch.setattr(tune_storage, "GRACE_SECONDS", 1)
    url = storage_url(postgres_url, None)
    study = optuna.create_study(
        study_name="orphan", storage=open_storage(url, shared=True), direction="maximize"
    )
    with warnings.catch_warnings():  # Optuna warns that heartbeats go with Study.optimize
        warnings.simplefilter("ignore", UserWarning)
        orphan = study.ask()  # a worker that died mid-trial: one heartbeat, then silence
    orphan.suggest_float("optimizer.learning_rate", 1e-3, 3e-2, log=True)
    study._storage.record_heartbeat(orphan._trial_id)
    time.sleep(2.5)
    command = tune_command(setup, tmp_path / "out", postgres_url, "orphan", 2)
    assert main(command[3:]) == 0
    trials = load(postgres_url, "orphan").get_trials()
    assert trials[0].state == optuna.trial.TrialState.FAIL
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 2
    assert orphan.params in [t.params for t in complete]  # queued again with its values


OPEN_STORAGE = """
import sys
from bertfit.tune.storage import open_storage, storage_url
open_storage(storage_url(sys.argv[1], None), True)
"""


def test_workers_starting_together_on_an_empty_database_all_open_it(postgres_url):
    """Each process creates Optuna's tables in a database that has none; all but one lose that
    race ("already exists") and must open the winner's tables instead of failing. The race is
    run on three fresh databases, eight processes each: one round alone does not always lose."""
    import psycopg

    for round_ in range(3):
        name = f"empty_at_start_{round_}"
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        url = postgres_url.rsplit("/", 1)[0] + "/" + name
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", OPEN_STORAGE, url], stderr=subprocess.PIPE, text=True
            )  # fmt: skip
            for _ in range(8)
        ]
        errors = [worker.communicate(timeout=300)[1] for worker in workers]
        assert [worker.returncode for worker in workers] == [0] * 8, errors
