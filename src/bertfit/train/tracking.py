"""What a training run records as it goes: per-step scalars and evaluations.

:class:`RunTracker` receives one call per optimizer step and one per evaluation from the
:class:`~bertfit.train.trainer.Trainer`. It keeps the per-step records in memory (for plots and
the Python API), always appends them to ``RUN/steps.jsonl``, and, when
``LoggingConfig.tensorboard`` is on, writes them and the dev metrics to TensorBoard event files
under ``RUN/tensorboard/``.

A per-step record is ``{"step", "epoch", "loss", "learning_rate", "examples_per_second",
"grad_norm"}``: ``step`` counts the updates applied so far (1 after the first), ``learning_rate``
is the rate that update used (``learning_rate_schedule(config)(step - 1)``), ``grad_norm`` the
global gradient norm before clipping. With ``log_every_steps = k`` one record covers ``k`` steps:
loss and gradient norm are their means, examples/s the window's throughput, the learning rate
that of its last step.

TensorBoard tags: ``train/loss``, ``train/learning_rate``, ``train/examples_per_second``,
``train/grad_norm`` at every record; ``train/epoch_loss`` and ``<split>/<metric>`` (for example
``dev/accuracy``) at every evaluation, all against the step.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bertfit.config import atomic_write_text
from bertfit.errors import ConfigError
from bertfit.train.config import LoggingConfig

STEP_LOG_FILE = "steps.jsonl"
TENSORBOARD_DIR = "tensorboard"

# Keys of an evaluation record that describe training rather than an evaluation split.
_TRAINING_KEYS = frozenset(
    {"epoch", "step", "train_loss", "learning_rate", "examples_per_second", "train_seconds",
     "train_examples"}
)  # fmt: skip


def read_jsonl(path: str | Path) -> list[dict]:
    """Records of a JSON-lines log; a last line cut short by a crash is left out."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    lines = text.split("\n")
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):  # unterminated: the writer stopped mid-line
                break
            raise ConfigError(f"{path}:{number}: not a JSON record") from None
    return records


def split_metric_key(key: str, metric_names: Iterable[str]) -> tuple[str, str] | None:
    """``"dev_matched_accuracy"`` -> ``("dev_matched", "accuracy")``; None if not a metric."""
    if key in _TRAINING_KEYS:
        return None
    for metric in sorted(metric_names, key=len, reverse=True):
        if key.endswith("_" + metric) and len(key) > len(metric) + 1:
            return key[: -len(metric) - 1], metric
    return None


class TensorBoardWriter:
    """Scalars into TensorBoard event files (torch's ``SummaryWriter``), flushed as they come."""

    def __init__(self, log_dir: Path, purge_step: int | None = None) -> None:
        try:  # the tensorboard extra, loaded only when a run asks for it
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "logging.tensorboard needs the tensorboard package: "
                "pip install tensorboard (or bertfit[tensorboard])"
            ) from None
        log_dir.mkdir(parents=True, exist_ok=True)
        # Event files of an earlier run in this directory would be drawn as one mixed curve;
        # a resumed run keeps them, and TensorBoard drops their events from purge_step on.
        if purge_step is None:
            for old in log_dir.glob("events.out.tfevents.*"):
                old.unlink()
        self.log_dir = log_dir
        self._writer = SummaryWriter(log_dir=str(log_dir), flush_secs=10, purge_step=purge_step)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Write one scalar per tag at ``step``."""
        for tag, value in values.items():
            if value is not None and math.isfinite(value):
                self._writer.add_scalar(tag, value, step)

    def flush(self) -> None:
        """Push buffered events to disk."""
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self._writer.close()


class RunTracker:
    """Per-step and per-evaluation records of one ``Trainer.fit`` (see the module docstring).

    ``output_dir`` None keeps the records in memory only. ``metric_names`` are the task's
    metrics, used to tell ``<split>_<metric>`` keys of an evaluation record apart.
    ``resume_step`` continues a run from its checkpoint at that step: the records it had
    written up to that step are kept (later ones, from after the checkpoint, are dropped, as
    the resumed run writes them again) and new ones are appended, so ``steps.jsonl`` has no
    gap and no duplicate.
    """

    def __init__(
        self,
        output_dir: Path | None,
        config: LoggingConfig | None = None,
        metric_names: Sequence[str] = (),
        resume_step: int | None = None,
    ) -> None:
        self.config = config or LoggingConfig()
        self.config.validate()
        self.metric_names = tuple(metric_names)
        self.records: list[dict[str, Any]] = []
        self._window: list[dict[str, float]] = []
        self._log = None
        self._tensorboard: TensorBoardWriter | None = None
        if output_dir is not None:
            output_dir.mkdir(parents=True, exist_ok=True)
            if self.config.tensorboard:
                purge = None if resume_step is None else resume_step + 1
                self._tensorboard = TensorBoardWriter(output_dir / TENSORBOARD_DIR, purge)
            log_path = output_dir / STEP_LOG_FILE
            if resume_step is not None:
                kept = [r for r in read_jsonl(log_path) if r["step"] <= resume_step]
                atomic_write_text(log_path, "".join(json.dumps(r) + "\n" for r in kept))
                self.records = kept
            # Appended line by line, like TensorBoard's own event files: rewriting the whole
            # file at every step would cost time quadratic in the number of steps.
            mode = "w" if resume_step is None else "a"
            self._log = open(log_path, mode, encoding="utf-8")

    @property
    def pending(self) -> list[dict[str, float]]:
        """Steps not yet written (a ``log_every_steps`` window in progress), for checkpoints."""
        return [dict(w) for w in self._window]

    def restore_pending(self, window: list[dict[str, float]]) -> None:
        """Put back the window of :attr:`pending` saved in a checkpoint."""
        self._window = [dict(w) for w in window]

    def step(
        self,
        *,
        step: int,
        epoch: int,
        loss: float,
        learning_rate: float,
        grad_norm: float | None,
        examples: int,
        seconds: float,
    ) -> None:
        """Record one optimizer step; every ``log_every_steps`` steps a record is written."""
        self._window.append(
            {"loss": loss, "grad_norm": grad_norm, "examples": examples, "seconds": seconds}
        )
        if step % self.config.log_every_steps == 0:
            self._write_window(step, epoch, learning_rate)

    def end_epoch(self, step: int, epoch: int, learning_rate: float) -> None:
        """Write the steps of a window cut short by the end of an epoch or of training."""
        if self._window:
            self._write_window(step, epoch, learning_rate)

    def _write_window(self, step: int, epoch: int, learning_rate: float) -> None:
        window, self._window = self._window, []
        norms = [w["grad_norm"] for w in window if w["grad_norm"] is not None]
        seconds = sum(w["seconds"] for w in window)
        record = {
            "step": step,
            "epoch": epoch,
            "loss": sum(w["loss"] for w in window) / len(window),
            "learning_rate": learning_rate,
            "examples_per_second": sum(w["examples"] for w in window) / seconds
            if seconds > 0
            else 0.0,
            "grad_norm": sum(norms) / len(norms) if norms else None,
        }
        self.records.append(record)
        if self._log is not None:
            # One write per line, flushed, so a reader never sees more than one partial line.
            self._log.write(json.dumps(record) + "\n")
            self._log.flush()
        if self._tensorboard is not None:
            names = ("loss", "learning_rate", "examples_per_second", "grad_norm")
            self._tensorboard.scalars(step, {f"train/{n}": record[n] for n in names})

    def evaluation(self, record: dict[str, Any]) -> None:
        """Send an evaluation record (``history.jsonl``'s) to TensorBoard."""
        if self._tensorboard is None:
            return
        values = {"train/epoch_loss": record.get("train_loss")}
        for key, value in record.items():
            parts = split_metric_key(key, self.metric_names)
            if parts is not None and isinstance(value, (int, float)):
                values[f"{parts[0]}/{parts[1]}"] = float(value)
        self._tensorboard.scalars(record["step"], values)
        self._tensorboard.flush()

    def close(self) -> None:
        """Close the log files (the in-memory records stay)."""
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None


def global_grad_norm(parameters: Iterable) -> float:
    """L2 norm of all gradients together (what ``clip_grad_norm_`` measures), without clipping."""
    import torch  # step logs are read (by plots) without torch

    norms = [torch.linalg.vector_norm(p.grad.detach()) for p in parameters if p.grad is not None]
    if not norms:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack(norms)))
