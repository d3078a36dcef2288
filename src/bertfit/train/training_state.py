"""What a checkpoint keeps of a training run, and how a resumed run gets it back.

:mod:`bertfit.train.checkpoint` writes and reads the files; this module decides what goes into
them and back out: the model, the optimizer, the schedule and the loss scaler, every process's
random generators, and the loop's own state (:class:`LoopState`: where it stands, the partial
averages, the metric history and the best record). On resume it checks that the run has the
shape of the one that wrote the checkpoint (:class:`RunShape`). Every process takes part in a
save (the generators are gathered, and under FSDP the weights), process 0 writes, and all of
them agree on the outcome.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bertfit.errors import CheckpointError
from bertfit.text.ragged import example_lengths
from bertfit.train import distributed
from bertfit.train.checkpoint import (
    capture_rng_state,
    checkpoints_dir,
    load_checkpoint,
    save_checkpoint,
)
from bertfit.train.config import TrainerConfig


@dataclass
class Position:
    """Where the loop stands: ``step`` updates done, ``batches_done`` of ``epoch``'s batches."""

    step: int = 0
    epoch: int = 1
    batches_done: int = 0


@dataclass
class Window:
    """Training figures since the last evaluation: what the next history record describes."""

    losses: list[float] = field(default_factory=list)
    examples: int = 0
    started: float = field(default_factory=time.perf_counter)

    def stats(self, scheduler) -> dict:
        """The window's part of an evaluation record: mean loss, learning rate, throughput."""
        elapsed = time.perf_counter() - self.started
        return {
            "train_loss": float(np.mean(self.losses)) if self.losses else float("nan"),
            "learning_rate": float(scheduler.get_last_lr()[0]),
            "examples_per_second": self.examples / elapsed if elapsed > 0 else 0.0,
            "train_seconds": elapsed,
            "train_examples": self.examples,
        }


@dataclass
class LoopState:
    """The loop's own part of a checkpoint (the model, optimizer and generators aside)."""

    position: Position
    finished: bool = False
    learning_rate: float = float("nan")  # the rate of the latest update
    window: Window = field(default_factory=Window)
    tracker_pending: list[dict] = field(default_factory=list)  # see RunTracker.pending
    history: list[dict] = field(default_factory=list)
    best: dict | None = None
    # Where and why a callback ended the run early ({"step", "epoch", "reason"}); None if not.
    stopped: dict | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields of ``trainer.json`` that this state fills (the step is the directory's)."""
        return {
            "epoch": self.position.epoch,
            "batches_done": self.position.batches_done,
            "finished": self.finished,
            "learning_rate": self.learning_rate,
            "window_losses": self.window.losses,
            "window_examples": self.window.examples,
            "tracker_pending": self.tracker_pending,
            "history": self.history,
            "best": self.best,
            "stopped": self.stopped,
        }

    @classmethod
    def from_dict(cls, step: int, state: dict[str, Any]) -> LoopState:
        """The state that :meth:`to_dict` wrote at ``step``."""
        return cls(
            position=Position(step, state["epoch"], state["batches_done"]),
            finished=state["finished"],
            learning_rate=state["learning_rate"],
            window=Window(list(state["window_losses"]), state["window_examples"]),
            tracker_pending=list(state["tracker_pending"]),
            history=list(state["history"]),
            best=state["best"],
            stopped=state.get("stopped"),  # checkpoints written before it have none
        )


def data_fingerprint(inputs, input_labels: np.ndarray) -> str:
    """A digest of the training inputs' lengths and labels: a resumed run must see the same."""
    digest = hashlib.sha256()
    digest.update(np.asarray(example_lengths(inputs), dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(input_labels).tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class RunShape:
    """What a checkpoint and the run resuming it must agree on: the data order depends on the
    process count and the global batch, the schedule on the step count."""

    world_size: int
    global_batch_size: int
    total_steps: int
    data_fingerprint: str

    def check(self, path: Path, state: dict[str, Any]) -> None:
        """Raise :class:`CheckpointError` naming the first setting ``state`` differs in."""
        for key, value in asdict(self).items():
            if state[key] != value:
                raise CheckpointError(
                    f"{path}: written with {key} {state[key]!r} but this run has "
                    f"{value!r}; resume with the run's own settings, data and process count"
                )


@dataclass
class TrainedParts:
    """What the loop trains with: the (unwrapped) model, optimizer, schedule, loss scaler."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any = None  # fp16's GradScaler, else None


class TrainingCheckpoints:
    """Saves the training state as ``RUN/checkpoints/step-N`` and restores it on resume.

    ``output_dir`` None, or ``trainer.save_checkpoints`` off, saves nothing (:attr:`enabled`).
    ``device`` is the training device, where the processes agree on a save's outcome.
    """

    def __init__(self, output_dir: Path | None, config: TrainerConfig, device) -> None:
        self.enabled = output_dir is not None and config.save_checkpoints
        self.directory = checkpoints_dir(output_dir) if output_dir is not None else None
        self.keep = config.keep_checkpoints
        self.device = device
        self.last: Path | None = None  # the latest checkpoint written or resumed from

    def save(self, parts: TrainedParts, shape: RunShape, loop: LoopState) -> None:
        """Write a checkpoint of ``loop.position.step`` (process 0 writes; every process calls
        this). Raises :class:`CheckpointError` on every process if the write failed."""
        rng = distributed.gather_objects(capture_rng_state())  # first: saving draws nothing
        model_state = distributed.model_state_dict(parts.model)
        optimizer_state = {
            "optimizer": distributed.optimizer_state_dict(parts.model, parts.optimizer),
            "scheduler": parts.scheduler.state_dict(),
        }
        if parts.scaler is not None:  # fp16: the loss scale it has learned
            optimizer_state["grad_scaler"] = parts.scaler.state_dict()
        step = loop.position.step
        error: CheckpointError | None = None
        if distributed.current().is_main:
            try:
                save_checkpoint(
                    self.directory,
                    step,
                    model_state=model_state,
                    optimizer_state=optimizer_state,
                    rng_states=rng,
                    trainer_state={**asdict(shape), **loop.to_dict()},
                    keep=self.keep,
                )
            except CheckpointError as failure:
                error = failure
        if not distributed.broadcast_flag(error is None, device=self.device):
            raise error or CheckpointError("process 0 could not write the checkpoint")
        self.last = self.directory / f"step-{step}"

    def restore(
        self, path: str | Path, parts: TrainedParts, shape: RunShape
    ) -> tuple[LoopState, dict[str, Any]]:
        """Load the checkpoint ``path`` into ``parts``; return its loop state and this
        process's random generators (to put back last, with
        :func:`~bertfit.train.checkpoint.restore_rng_state`: nothing may draw after them)."""
        checkpoint = load_checkpoint(path)
        shape.check(checkpoint.path, checkpoint.state)
        distributed.load_model_state_dict(parts.model, checkpoint.model)
        distributed.load_optimizer_state_dict(
            parts.model, parts.optimizer, checkpoint.optimizer["optimizer"]
        )
        parts.scheduler.load_state_dict(checkpoint.optimizer["scheduler"])
        if parts.scaler is not None and "grad_scaler" in checkpoint.optimizer:
            parts.scaler.load_state_dict(checkpoint.optimizer["grad_scaler"])
        self.last = checkpoint.path
        rng = checkpoint.rng[distributed.current().rank]
        return LoopState.from_dict(checkpoint.step, checkpoint.state), rng
