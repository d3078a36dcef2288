"""Scale-out: N processes x batch B train as one process x N*B; accumulation as a larger batch.

The tiny model has dropout 0, so the only differences between the runs compared here are how
the examples are split and how gradients are summed: the losses and weights must agree to
float32 rounding (1e-5). Every run is in fp32: on a CPU with native bf16, ``auto`` would pick
bf16 autocast, whose rounding differs with the batch's split. Two-process runs use
``torchrun`` on CPU with ``gloo``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bertfit.data.readers import TextExamples
from bertfit.data.tasks import MRPC
from bertfit.train.checkpoint import list_checkpoints
from bertfit.train.config import TrainerConfig
from bertfit.train.distributed import shard_batch
from bertfit.train.optim import OptimizationConfig
from bertfit.train.trainer import Trainer

from conftest import make_tiny_classifier, synthetic_pairs, write_synthetic_glue

TOLERANCE = 1e-5


def test_shards_cover_the_global_batch_once_in_near_equal_slots():
    batch = list(range(23))
    for world_size, accum in ((1, 1), (2, 1), (2, 3), (4, 2)):
        slots = [
            micro
            for rank in range(world_size)
            for micro in shard_batch(batch, rank, world_size, accum)
        ]
        assert sorted(i for micro in slots for i in micro) == batch
        sizes = [len(micro) for micro in slots]
        assert max(sizes) - min(sizes) <= 1


# -- gradient accumulation --------------------------------------------------------------------


def _fit(tmp_path, batch_size: int, accum: int):
    trainer = Trainer(
        make_tiny_classifier(tmp_path),
        MRPC,
        TrainerConfig(
            epochs=2, batch_size=batch_size, grad_accum_steps=accum, seed=0, precision="fp32"
        ),
        OptimizationConfig(learning_rate=3e-3),
        progress=False,
    )
    columns, labels = synthetic_pairs(100, 1)  # 100 = 5 x 18 + 10: a short last batch
    result = trainer.fit(trainer.encode(TextExamples(columns, labels, "synthetic")), None)
    return result, trainer.classifier.model.state_dict()


@pytest.mark.parametrize("batch_size, accum", [(9, 2), (6, 3)])
def test_gradient_accumulation_equals_the_larger_batch(tmp_path, batch_size, accum):
    expected, expected_weights = _fit(tmp_path, batch_size * accum, 1)
    result, weights = _fit(tmp_path, batch_size, accum)
    assert result.steps == expected.steps == 2 * 6
    for ours, theirs in zip(result.step_records, expected.step_records):
        assert ours["learning_rate"] == theirs["learning_rate"]
        assert ours["loss"] == pytest.approx(theirs["loss"], abs=TOLERANCE)
    for name, value in weights.items():
        torch.testing.assert_close(value, expected_weights[name], atol=TOLERANCE, rtol=0)


# -- two processes with torchrun --------------------------------------------------------------


@pytest.fixture(scope="module")
def glue_and_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    model = root / "tiny-model"
    make_tiny_classifier(root).save_pretrained(model)
    # 100 examples: the last global batch of 16 holds 4, shards of a short batch included.
    return write_synthetic_glue(root / "glue", n_train=100, n_dev=16), model


def _train(run_dir: Path, glue_and_model, batch_size: int, processes: int, *extra: str):
    glue, model = glue_and_model
    launcher = [sys.executable, "-m", "bertfit"]
    if processes > 1:
        launcher = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc-per-node", str(processes), "-m", "bertfit",
        ]  # fmt: skip
    result = subprocess.run(
        [*launcher, "train", "--output", str(run_dir), "--data-dir", str(glue),
         "--model", str(model), "--epochs", "2", "--batch-size", str(batch_size),
         "--max-seq-length", "32", "--learning-rate", "3e-3", "--precision", "fp32", "--quiet",
         *extra],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result


def _assert_same_training(run_dir: Path, reference: Path) -> None:
    records = [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines()]
    expected = [json.loads(line) for line in (reference / "steps.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [r["step"] for r in expected] == list(range(1, 15))
    for ours, theirs in zip(records, expected):
        assert ours["learning_rate"] == theirs["learning_rate"]
        assert ours["loss"] == pytest.approx(theirs["loss"], abs=TOLERANCE)
        assert ours["grad_norm"] == pytest.approx(theirs["grad_norm"], abs=TOLERANCE)
    final = load_file(list_checkpoints(run_dir / "checkpoints")[-1] / "model.safetensors")
    wanted = load_file(list_checkpoints(reference / "checkpoints")[-1] / "model.safetensors")
    assert final.keys() == wanted.keys()
    for name, value in final.items():
        torch.testing.assert_close(value, wanted[name], atol=TOLERANCE, rtol=0)


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory, glue_and_model) -> Path:
    run_dir = tmp_path_factory.mktemp("one") / "run"
    _train(run_dir, glue_and_model, batch_size=16, processes=1)
    return run_dir


@pytest.mark.slow
def test_two_processes_of_batch_b_train_as_one_of_batch_2b(
    tmp_path, glue_and_model, one_process_run
):
    result = _train(tmp_path / "run", glue_and_model, batch_size=8, processes=2)
    _assert_same_training(tmp_path / "run", one_process_run)
    # Only rank 0 prints and writes.
    assert result.stdout.count("training mrpc") == 1 and "on 2 processes" in result.stdout
    assert result.stdout.count("best model") == 1


@pytest.mark.slow
def test_two_processes_with_accumulation_train_as_one_big_batch(
    tmp_path, glue_and_model, one_process_run
):
    _train(tmp_path / "run", glue_and_model, 4, 2, "--grad-accum-steps", "2")
    _assert_same_training(tmp_path / "run", one_process_run)


@pytest.mark.slow
def test_class_weights_on_two_processes_train_as_one_process(tmp_path, glue_and_model):
    """Balanced weights come from the whole training set on every process, and weighted
    losses of two shards add up to the weighted loss of their batch."""
    weights = ("--class-weights", "balanced")
    _train(tmp_path / "one", glue_and_model, 16, 1, *weights)
    _train(tmp_path / "two", glue_and_model, 8, 2, *weights)
    _assert_same_training(tmp_path / "two", tmp_path / "one")


@pytest.mark.slow
def test_early_stopping_stops_both_processes_at_the_same_step(tmp_path, glue_and_model):
    """7 steps an epoch: evaluations at 2 and 4, and with nothing beating the best by 1, a
    stop at 4 that each process decides from the same history (a process that went on alone
    would wait for the other in its next collective, and the run would not end)."""
    stopping = ("--eval-every-steps", "2", "--early-stopping-patience", "1")
    result = _train(
        tmp_path / "run", glue_and_model, 8, 2, *stopping, "--early-stopping-delta", "1"
    )
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["steps"] == 4 and results["stopped_early"]["step"] == 4
    assert result.stdout.count("stopped early at step 4 (epoch 1)") == 1  # rank 0 prints
    steps = (tmp_path / "run" / "steps.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in steps] == [1, 2, 3, 4]
    state = json.loads((tmp_path / "run/checkpoints/step-4/trainer.json").read_text())
    assert state["finished"] is True


@pytest.mark.slow
def test_fsdp_on_two_processes_trains_as_one_process(tmp_path, glue_and_model, one_process_run):
    _train(tmp_path / "run", glue_and_model, 8, 2, "--fsdp")
    _assert_same_training(tmp_path / "run", one_process_run)
    # The best model is gathered whole and loads as usual.
    from bertfit.inference import TextClassifier

    TextClassifier.from_pretrained(tmp_path / "run" / "model")


@pytest.mark.slow
def test_a_two_process_run_resumes_from_its_checkpoint(tmp_path, glue_and_model, one_process_run):
    run_dir = tmp_path / "run"
    _train(run_dir, glue_and_model, 8, 2)
    # Back to the end of epoch 1, as if the job had died in epoch 2.
    for path in list_checkpoints(run_dir / "checkpoints")[1:]:
        path.rename(path.with_name("removed-" + path.name))
    (run_dir / "results.json").unlink()
    glue, _ = glue_and_model
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "bertfit", "train", "--resume", str(run_dir), "--quiet"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("resuming from step 7") == 1
    _assert_same_training(run_dir, one_process_run)
    resumed_with_one = subprocess.run(
        [sys.executable, "-m", "bertfit", "train", "--resume", str(run_dir)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed_with_one.returncode == 0  # finished now: says so whatever the process count


@pytest.mark.slow
def test_a_restarted_job_resumes_by_itself_after_a_worker_dies(
    tmp_path, glue_and_model, one_process_run
):
    # torchrun --max-restarts starts the same command again; --resume-if-exists makes that
    # command continue the run. Rank 1 dies at step 5 (see die_once.py), after the step-4
    # checkpoint: the second attempt must resume from it and end as the uninterrupted run.
    run_dir, marker = tmp_path / "run", tmp_path / "died"
    glue, model = glue_and_model
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "--max-restarts", "1", str(Path(__file__).with_name("die_once.py")),
         "train", "--output", str(run_dir), "--data-dir", str(glue), "--model", str(model),
         "--epochs", "2", "--batch-size", "8", "--max-seq-length", "32", "--learning-rate",
         "3e-3", "--precision", "fp32", "--quiet", "--checkpoint-every", "2",
         "--resume-if-exists"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", "DIE_AT_STEP": "5", "DIE_MARKER": str(marker),
             "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"},  # see distributed.restart_warning
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE" not in result.stderr  # no warning: it is set
    assert marker.exists()  # the first attempt did die
    assert result.stdout.count("resuming from step 4") == 1, result.stdout
    _assert_same_training(run_dir, one_process_run)


@pytest.mark.slow
def test_every_collective_runs_on_the_training_device(tmp_path):
    # On GPUs the group is NCCL, which reduces CUDA tensors only: a collective handed a tensor
    # on another device than the trainer's fails the first step. See collective_worker.py.
    worker = Path(__file__).with_name("collective_worker.py")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         str(worker), str(tmp_path), "cpu"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for rank in (0, 1):
        record = json.loads((tmp_path / f"collectives-{rank}.json").read_text())
        calls, device = record["calls"], record["device"]
        # The step's agreement, the checkpoint's outcome and its random generators all ran.
        names = {call.get("collective") or call.get("helper") for call in calls}
        assert {"all_reduce", "broadcast", "all_gather_object"} <= names, names
        assert {"all_reduce_sum", "broadcast_flag"} <= names, names
        for call in calls:
            if "helper" in call:  # told the trainer's device, not left to a default
                assert call["device"] == device, call
            else:
                assert all(found == device for found in call["devices"]), call


@pytest.mark.slow
def test_a_callback_on_one_process_stops_every_process_at_the_same_step(tmp_path):
    worker = Path(__file__).with_name("stop_worker.py")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         str(worker), str(tmp_path)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for rank in (0, 1):  # 5 steps per epoch: evaluations at 2 and 4, then a stop at 4
        record = json.loads((tmp_path / f"stopped-{rank}.json").read_text())
        assert record == {"steps": 4, "stopped_early": True, "evaluated_at": [2, 4]}


def test_a_device_the_nccl_group_cannot_reduce_on_is_refused(monkeypatch):
    from bertfit.errors import ConfigError
    from bertfit.train import distributed

    monkeypatch.setattr(distributed, "current", lambda: distributed.DistributedContext(0, 2))
    monkeypatch.setattr(distributed.dist, "get_backend", lambda: "nccl")
    with pytest.raises(ConfigError, match="trainer.device is cpu.*nccl.*CUDA tensors only"):
        distributed.check_device("cpu")
    monkeypatch.setattr(distributed.dist, "get_backend", lambda: "gloo")
    distributed.check_device("cpu")  # gloo reduces CPU tensors


def test_restarts_through_the_shared_rendezvous_store_are_warned_about():
    from bertfit.train.distributed import restart_warning

    # What torchrun puts in its workers' environment, with and without --max-restarts and
    # with and without TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 (then the store is not shared).
    shared = {"TORCHELASTIC_MAX_RESTARTS": "1", "TORCHELASTIC_USE_AGENT_STORE": "True"}
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1" in restart_warning(shared)
    assert restart_warning({**shared, "TORCHELASTIC_MAX_RESTARTS": "0"}) is None
    assert restart_warning({**shared, "TORCHELASTIC_USE_AGENT_STORE": "False"}) is None


def test_leaving_without_a_process_group_is_a_no_op():
    from bertfit.train.distributed import shutdown

    assert shutdown(wait_for_others=True) is False


def test_a_worker_exits_with_its_code_and_its_buffered_output():
    # exit_process skips the interpreter's teardown, so it must flush what is still buffered
    # (stdout to a pipe is block-buffered: without the flush nothing would arrive).
    script = (
        "import sys; from bertfit.train.distributed import exit_process; "
        "print('to stdout'); print('to stderr', file=sys.stderr); exit_process(3)"
    )
    buffered = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=buffered
    )
    assert result.returncode == 3
    assert result.stdout == "to stdout\n" and result.stderr == "to stderr\n"
