"""Checkpoints and resume: a killed run resumes bit for bit; damage, full disks and signals.

The reference is one uninterrupted run (module fixture) that keeps every checkpoint; the other
runs use the same data, model and settings and must end with exactly its weights and its
per-step learning rates and losses.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bertfit.cli import main
from bertfit.data.readers import TextExamples
from bertfit.data.tasks import MRPC
from bertfit.errors import CheckpointError
from bertfit.train.checkpoint import (
    capture_rng_state,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    verify_checkpoint,
)
from bertfit.train.config import TrainerConfig
from bertfit.train.optim import OptimizationConfig
from bertfit.train.trainer import Trainer

from conftest import make_tiny_classifier, synthetic_pairs, write_synthetic_glue

EPOCHS, BATCH, N_TRAIN = 2, 8, 256  # 32 steps per epoch, 64 in all


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def train_command(run_dir: Path, setup: dict, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "bertfit", "train", "--output", str(run_dir),
        "--data-dir", str(setup["glue"]), "--model", str(setup["model"]),
        "--epochs", str(EPOCHS), "--batch-size", str(BATCH), "--max-seq-length", "32",
        "--learning-rate", "3e-3", "--checkpoint-every", "2", "--quiet", *extra,
    ]  # fmt: skip


def bertfit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bertfit", *args],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )


def steps(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines()]


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """The weights after the last step (the best model may be an earlier one)."""
    return load_file(list_checkpoints(run_dir / "checkpoints")[-1] / "model.safetensors")


def assert_same_run(run_dir: Path, reference: Path) -> None:
    """Bit-identical final weights, and the same learning rate and loss at every step."""
    ours, theirs = final_weights(run_dir), final_weights(reference)
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[name], theirs[name]) for name in ours)
    records = steps(run_dir)
    assert [r["step"] for r in records] == list(range(1, EPOCHS * N_TRAIN // BATCH + 1))
    for ours_record, theirs_record in zip(records, steps(reference)):
        assert ours_record["learning_rate"] == theirs_record["learning_rate"]
        assert ours_record["loss"] == theirs_record["loss"]
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    expected = [json.loads(line) for line in (reference / "history.jsonl").read_text().splitlines()]
    timing = {"examples_per_second", "train_seconds"}
    strip = [{k: v for k, v in r.items() if k not in timing} for r in history]
    assert strip == [{k: v for k, v in r.items() if k not in timing} for r in expected]


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    """Synthetic MRPC, a tiny model (dropout 0), and one uninterrupted run keeping every
    checkpoint."""
    root = tmp_path_factory.mktemp("resume")
    glue = write_synthetic_glue(root / "glue", n_train=N_TRAIN, n_dev=32)
    model = root / "tiny-model"
    make_tiny_classifier(root).save_pretrained(model)
    setup = {"root": root, "glue": glue, "model": model}
    reference = root / "reference"
    result = subprocess.run(
        train_command(reference, setup, "--keep-checkpoints", "100"),
        capture_output=True, text=True, env=_env(), timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    setup["reference"] = reference
    return setup


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_bit_identical(setup, tmp_path):
    seed = random.randrange(1 << 30)
    kill_at = random.Random(seed).choice([s for s in range(4, 31, 2)])  # inside epoch 1
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        train_command(run_dir, setup),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(),
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (run_dir / "checkpoints" / f"step-{kill_at}").exists():
        assert process.poll() is None and time.monotonic() < deadline, f"seed {seed}"
        time.sleep(0.002)
    process.kill()  # SIGKILL: no handler runs, files stay as they are at this instant
    process.wait(timeout=30)
    assert not (run_dir / "results.json").exists(), f"the run finished first (seed {seed})"
    result = bertfit("train", "--resume", str(run_dir), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "resuming from step" in result.stdout, result.stdout
    assert_same_run(run_dir, setup["reference"])
    assert [p for p in run_dir.rglob(".*")] == []  # no staging directory left behind


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_checkpoint_is_detected_and_the_previous_one_used(setup, tmp_path, damage):
    run_dir = tmp_path / "run"
    shutil.copytree(setup["reference"], run_dir)
    for path in list_checkpoints(run_dir / "checkpoints"):
        if int(path.name.split("-")[1]) > 20:
            shutil.rmtree(path)
    (run_dir / "results.json").unlink()
    victim = run_dir / "checkpoints" / "step-20" / "optimizer.pt"
    data = bytearray(victim.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    result = bertfit("train", "--resume", str(run_dir), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "step-20" in result.stderr and "warning" in result.stderr
    assert "resuming from step 18" in result.stdout
    assert_same_run(run_dir, setup["reference"])


@pytest.mark.slow
@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_saves_a_checkpoint_and_exits_cleanly(setup, tmp_path, signum, status):
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        train_command(run_dir, setup),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (run_dir / "checkpoints" / "step-6").exists() and time.monotonic() < deadline:
        time.sleep(0.002)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == status, stderr
    assert "Traceback" not in stderr and "--resume" in stderr
    saved = list_checkpoints(run_dir / "checkpoints")[-1]
    assert f"saved {saved}" in stderr  # the step it stopped at, even off the every-2 grid
    verify_checkpoint(saved)
    assert [p for p in run_dir.rglob(".*")] == []
    # Resumed in a process of its own with the reference's thread count: a different number of
    # threads sums matrix products in another order, and bit-identity would not hold.
    resumed = subprocess.run(
        [sys.executable, "-m", "bertfit", "train", "--resume", str(run_dir), "--quiet"],
        capture_output=True, text=True, env=_env(), timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(run_dir, setup["reference"])


def test_resuming_a_finished_run_says_so(setup, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(setup["reference"], run_dir)
    (run_dir / "results.json").unlink()  # as if it was killed right after its last checkpoint
    assert main(["train", "--resume", str(run_dir)]) == 0
    assert "already finished (64 steps)" in capsys.readouterr().out
    assert json.loads((run_dir / "results.json").read_text())["steps"] == 64


def test_resume_mistakes_are_one_line_errors(setup, tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "no config.json" in capsys.readouterr().err
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copy(setup["reference"] / "config.json", run_dir)
    assert main(["train", "--resume", str(run_dir)]) == 2
    assert "no complete checkpoint" in capsys.readouterr().err
    assert main(["train", "--resume", str(setup["reference"]), "--epochs", "5"]) == 2
    assert "leave out trainer.epochs" in capsys.readouterr().err
    assert main(["train"]) == 2
    assert "--output" in capsys.readouterr().err


# -- --resume-if-exists: the same command again continues the run ----------------------------


def _same_command(setup: dict, run_dir: Path, *extra: str) -> list[str]:
    """The reference's own ``train`` arguments, for ``main``, writing to ``run_dir``."""
    return train_command(run_dir, setup, "--keep-checkpoints", "100", *extra)[3:]


@pytest.mark.slow
def test_resume_if_exists_continues_a_run_from_its_latest_checkpoint(setup, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(setup["reference"], run_dir)
    for path in list_checkpoints(run_dir / "checkpoints"):
        if int(path.name.split("-")[1]) > 20:
            shutil.rmtree(path)
    (run_dir / "results.json").unlink()
    result = bertfit(*_same_command(setup, run_dir, "--resume-if-exists"))
    assert result.returncode == 0, result.stderr
    assert "resuming from step 20" in result.stdout
    assert_same_run(run_dir, setup["reference"])


@pytest.mark.slow
def test_resume_if_exists_starts_a_run_that_has_no_checkpoint_yet(setup, tmp_path):
    run_dir = tmp_path / "run"  # killed before its first checkpoint: a config and a log
    run_dir.mkdir()
    shutil.copy(setup["reference"] / "config.json", run_dir)
    (run_dir / "steps.jsonl").write_text('{"step": 1}\n')
    result = bertfit(*_same_command(setup, run_dir, "--resume-if-exists"))
    assert result.returncode == 0, result.stderr
    assert "no complete checkpoint yet; starting the run again" in result.stdout
    assert_same_run(run_dir, setup["reference"])


def test_resume_if_exists_on_a_finished_run_says_so(setup, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(setup["reference"], run_dir)
    assert main(_same_command(setup, run_dir, "--resume-if-exists")) == 0
    assert "already finished (64 steps)" in capsys.readouterr().out


def test_resume_if_exists_refuses_a_run_of_another_config(setup, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(setup["reference"], run_dir)
    before = sorted(p.name for p in run_dir.rglob("*"))
    command = _same_command(setup, run_dir, "--resume-if-exists", "--learning-rate", "1e-3")
    assert main(command) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error
    assert f"{run_dir} holds a run of another config (optimizer.learning_rate" in error
    assert "0.003 there, 0.001 here" in error
    assert sorted(p.name for p in run_dir.rglob("*")) == before  # nothing touched
    # Without the flag an existing run is refused as before, pointing at the flag.
    assert main(_same_command(setup, run_dir)) == 2
    assert "--resume-if-exists to continue it" in capsys.readouterr().err
    assert main(_same_command(setup, run_dir, "--resume-if-exists", "--overwrite")) == 2
    assert "--resume-if-exists does not go with --overwrite" in capsys.readouterr().err
    assert main(["train", "--resume", str(run_dir), "--resume-if-exists"]) == 2
    assert "leave out --resume-if-exists" in capsys.readouterr().err


# -- in-process faults ------------------------------------------------------------------------


def _trainer(tmp_path, **settings) -> tuple[Trainer, object]:
    config = TrainerConfig(
        **{"epochs": 1, "batch_size": 8, "seed": 0, "checkpoint_every_steps": 2, **settings}
    )
    trainer = Trainer(
        make_tiny_classifier(tmp_path),
        MRPC,
        config,
        OptimizationConfig(learning_rate=3e-3),
        output_dir=tmp_path / "run",
        progress=False,
    )
    columns, labels = synthetic_pairs(64, 1)
    return trainer, trainer.encode(TextExamples(columns, labels, "synthetic"))


def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    trainer, train = _trainer(tmp_path)
    import bertfit.train.checkpoint as checkpoint_module

    real_save, calls = checkpoint_module.torch.save, []

    def save_until_the_disk_fills(obj, path):
        calls.append(path)
        if len(calls) > 2:  # the second checkpoint's first torch.save: the disk is full
            raise OSError(28, "No space left on device")
        real_save(obj, path)

    monkeypatch.setattr(checkpoint_module.torch, "save", save_until_the_disk_fills)
    with pytest.raises(CheckpointError, match="No space left on device.*step-2 is intact"):
        trainer.fit(train, None)
    directory = tmp_path / "run" / "checkpoints"
    assert [p.name for p in directory.iterdir()] == ["step-2"]  # no half-written step-4
    verify_checkpoint(directory / "step-2")


def test_a_nan_loss_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    trainer, train = _trainer(tmp_path)
    real_loss, calls = Trainer._loss, []

    def nan_at_step_5(self, logits, labels):
        calls.append(1)
        loss = real_loss(self, logits, labels)
        return loss * float("nan") if len(calls) == 5 else loss

    monkeypatch.setattr(Trainer, "_loss", nan_at_step_5)
    with pytest.raises(FloatingPointError, match=r"nan at step 5; the last good .*step-4"):
        trainer.fit(train, None)
    assert latest_checkpoint(tmp_path / "run" / "checkpoints").name == "step-4"


# -- the checkpoint module --------------------------------------------------------------------


def test_random_generators_come_back_exactly():
    import numpy as np

    torch.manual_seed(1)
    state = capture_rng_state()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.rand(5), np.random.rand(5), random.random()
    restore_rng_state(state)
    assert torch.equal(torch.rand(3), expected[0])
    assert (np.random.rand(3) == expected[1]).all() and random.random() == expected[2]


def test_only_the_last_k_checkpoints_are_kept_and_load_safely(tmp_path):
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    for step in (1, 2, 3):
        save_checkpoint(
            tmp_path,
            step,
            model_state=model.state_dict(),
            optimizer_state={"optimizer": optimizer.state_dict()},
            rng_states=[capture_rng_state()],
            trainer_state={"finished": False},
            keep=2,
        )
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-2", "step-3"]
    loaded = load_checkpoint(tmp_path / "step-3")  # weights_only: nothing is unpickled
    assert loaded.step == 3 and torch.equal(loaded.model["weight"], model.weight)
    (tmp_path / "step-3" / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="incomplete"):
        verify_checkpoint(tmp_path / "step-3")
    warnings: list[str] = []
    assert latest_checkpoint(tmp_path, warnings.append).name == "step-2"
    assert len(warnings) == 1
