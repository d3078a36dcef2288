"""A ``torchrun`` worker for ``tests/test_distributed.py``: which device each collective gets.

    python -m torch.distributed.run --standalone --nproc-per-node 2 \
        tests/collective_worker.py OUT DEVICE

Every process joins the job's group (``gloo`` for ``cpu``, ``nccl`` for ``cuda``), then trains
the tiny classifier for a few steps with evaluations and checkpoints (each a collective) while
recording two things, and writes them to ``OUT/collectives-RANK.json``:

* every tensor that a ``torch.distributed`` collective receives from bertfit, with its device;
* the device that each of :mod:`bertfit.train.distributed`'s tensor collectives was asked to
  use (``None`` when the caller left it to a default).

NCCL reduces CUDA tensors only: a collective on any device but the training device fails on
GPUs. On the CPU every tensor is on the CPU anyway, so what the CPU test can check is that
each helper was given the trainer's own device, and not left to a default of its own.
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from bertfit.data.readers import TextExamples
from bertfit.data.tasks import MRPC
from bertfit.train import distributed
from bertfit.train.config import TrainerConfig
from bertfit.train.optim import OptimizationConfig
from bertfit.train.trainer import Trainer

from conftest import make_tiny_classifier, synthetic_pairs

COLLECTIVES = (
    "all_reduce", "broadcast", "all_gather", "all_gather_into_tensor", "reduce_scatter_tensor",
    "reduce", "gather", "scatter", "all_to_all", "send", "recv", "barrier",
    "all_gather_object", "broadcast_object_list", "gather_object", "scatter_object_list",
)  # fmt: skip
#: bertfit's helpers that build a tensor for a collective, and so must be told the device.
TENSOR_HELPERS = ("all_reduce_sum", "broadcast_flag")


def _tensors(values) -> list[torch.Tensor]:
    found = []
    for value in values:
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found.extend(_tensors(value))
    return found


def _placed(device) -> str:
    """Where a tensor made for ``device`` lands (``cuda`` names the current GPU, ``cuda:N``)."""
    return str(torch.empty(0, device=device).device)


def spy_on_collectives(calls: list[dict]) -> None:
    """Record every call of a ``torch.distributed`` collective and of bertfit's helpers."""

    def collective(name, function):
        @functools.wraps(function)
        def recorded(*args, **kwargs):
            tensors = _tensors([*args, *kwargs.values()])
            calls.append({"collective": name, "devices": [str(t.device) for t in tensors]})
            return function(*args, **kwargs)

        return recorded

    def helper(name, function):
        signature = inspect.signature(function)

        @functools.wraps(function)
        def recorded(*args, **kwargs):
            given = signature.bind_partial(*args, **kwargs).arguments.get("device")
            calls.append({"helper": name, "device": None if given is None else _placed(given)})
            return function(*args, **kwargs)

        return recorded

    for name in COLLECTIVES:
        setattr(dist, name, collective(name, getattr(dist, name)))
    for name in TENSOR_HELPERS:
        setattr(distributed, name, helper(name, getattr(distributed, name)))


def main(out: Path, device: str) -> None:
    distributed.init_from_env(device)
    rank = dist.get_rank()
    calls: list[dict] = []
    spy_on_collectives(calls)
    scratch = out / f"rank-{rank}"
    scratch.mkdir(parents=True, exist_ok=True)
    config = TrainerConfig(
        epochs=1,
        batch_size=4,
        seed=0,
        precision="fp32",
        device=device,
        checkpoint_every_steps=2,
        eval_every_steps=2,
    )
    trainer = Trainer(
        make_tiny_classifier(scratch),
        MRPC,
        config,
        OptimizationConfig(learning_rate=3e-3),
        output_dir=out / "run",
        progress=False,
    )
    train = trainer.encode(TextExamples(*synthetic_pairs(40, 1), "train"))
    dev = trainer.encode(TextExamples(*synthetic_pairs(8, 2), "dev"))
    trainer.fit(train, dev)
    record = {"device": _placed(trainer.device), "calls": calls}
    (out / f"collectives-{rank}.json").write_text(json.dumps(record, indent=1))
    distributed.shutdown(wait_for_others=True)
    distributed.exit_process(0)  # see exit_process: DDP keeps the group alive until teardown


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
