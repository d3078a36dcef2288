"""The training loop: fit a :class:`TextClassifier` on a task, evaluate on dev after each epoch.

The loop is deliberately plain PyTorch: length-grouped batches padded to their longest pair,
forward, loss, backward, AdamW step, schedule step. Each evaluation appends a record to the
metric history and, when the task's main metric improves, the model is saved.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bertfit.config import atomic_write_text
from bertfit.data.batching import length_grouped_batches, random_batches
from bertfit.data.readers import TextExamples
from bertfit.data.tasks import TaskSpec
from bertfit.errors import CheckpointError
from bertfit.inference import Packed, TextClassifier, batch_tensors, packed_batch
from bertfit.precision import autocast, grad_scaler, resolve_device, resolve_precision
from bertfit.progress import bar as progress_bar
from bertfit.progress import enabled as progress_enabled
from bertfit.text.ragged import example_lengths
from bertfit.train import distributed
from bertfit.train.checkpoint import (
    capture_rng_state,
    checkpoints_dir,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from bertfit.train.class_weights import class_weight_vector
from bertfit.train.config import LoggingConfig, TrainerConfig
from bertfit.train.evaluate import (
    EncodedExamples,
    encode_examples,
    logits_of_encoded,
    predictions_of,
)
from bertfit.train.losses import task_loss
from bertfit.train.memory import HeapTrimmer, limit_kernel_caches
from bertfit.train.metrics import collapse_message, compute_metrics, metric_prefix
from bertfit.train.optim import OptimizationConfig, build_optimizer, clip_gradients
from bertfit.train.phases import PhaseTimer
from bertfit.train.tracking import RunTracker, global_grad_norm

#: A training loss in place of the task's own: ``loss(logits, labels, targets)``, where
#: ``targets`` are the batch's rows of the training data's ``soft_targets`` (None without them).
LossFunction = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


@dataclass
class TrainResult:
    """What a finished run achieved."""

    history: list[dict] = field(default_factory=list)
    best: dict | None = None
    steps: int = 0
    # Per-step records (see bertfit.train.tracking), also written to RUN/steps.jsonl.
    step_records: list[dict] = field(default_factory=list)
    # The best evaluation's logits per dev split (one row per text), when this process ran it;
    # None when the best came from before a resume. Calibration fits on them.
    best_logits: dict[str, np.ndarray] | None = None


def _window_stats(losses: list[float], examples: int, started: float, scheduler) -> dict:
    """Training figures of the steps since the last evaluation."""
    elapsed = time.perf_counter() - started
    return {
        "train_loss": float(np.mean(losses)) if losses else float("nan"),
        "learning_rate": float(scheduler.get_last_lr()[0]),
        "examples_per_second": examples / elapsed if elapsed > 0 else 0.0,
        "train_seconds": elapsed,
        "train_examples": examples,
    }


@dataclass
class _Position:
    """Where the loop stands: ``step`` updates done, ``batches_done`` of ``epoch``'s batches."""

    step: int = 0
    epoch: int = 1
    batches_done: int = 0


@dataclass
class _Window:
    """Training figures since the last evaluation: what the next history record describes."""

    losses: list[float] = field(default_factory=list)
    examples: int = 0
    started: float = field(default_factory=time.perf_counter)

    def stats(self, scheduler) -> dict:
        return _window_stats(self.losses, self.examples, self.started, scheduler)


class _EpochBar:
    """An epoch's progress bar over its batches, showing the recent loss and the throughput."""

    def __init__(self, batches) -> None:
        self.batches = batches
        self.started = time.perf_counter()
        self.examples = 0
        self.recent: list[float] = []  # the last 20 losses

    def update(self, loss: float, examples: int, learning_rate: float, grad_norm: float) -> None:
        self.examples += examples
        self.recent = [*self.recent[-19:], loss]
        elapsed = time.perf_counter() - self.started
        self.batches.set_postfix(
            loss=f"{np.mean(self.recent):.4f}",
            lr=f"{learning_rate:.2e}",
            ex_s=f"{self.examples / elapsed:.1f}",
            gnorm=f"{grad_norm:.2f}",
            refresh=False,
        )


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped training after a whole step, saved in ``checkpoint``."""

    def __init__(self, signum: int, step: int, checkpoint: Path | None) -> None:
        super().__init__(f"stopped by signal {signum} after step {step}")
        self.signum = signum
        self.step = step
        self.checkpoint = checkpoint


def _data_fingerprint(data: EncodedExamples) -> str:
    """A digest of the training inputs' lengths and labels: a resumed run must see the same."""
    digest = hashlib.sha256()
    digest.update(np.asarray(example_lengths(data.inputs), dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(data.input_labels).tobytes())
    return digest.hexdigest()


class Trainer:
    """Fine-tunes a classifier; saves the best model and the metric history in ``output_dir``."""

    def __init__(
        self,
        classifier: TextClassifier,
        task: TaskSpec,
        trainer_config: TrainerConfig,
        optimization: OptimizationConfig,
        output_dir: Path | None = None,
        progress: bool | None = None,
        logging: LoggingConfig | None = None,
        phases: PhaseTimer | None = None,
        loss_function: LossFunction | None = None,
    ) -> None:
        self.classifier = classifier
        # None: the task's loss on the gold labels (bertfit.train.losses.task_loss); a
        # distilled run's mixes in the teacher's outputs carried with the training data.
        self.loss_function = loss_function
        self.task = task
        self.config = trainer_config
        self.optimization = optimization
        self._optimization = optimization  # fit's copy, with the run's decay horizon
        self.output_dir = Path(output_dir) if output_dir is not None else None
        # None: a progress bar only when stderr is a terminal (see bertfit.progress).
        self.progress = progress_enabled(progress)
        self.logging = logging or LoggingConfig()
        self._tracker: RunTracker | None = None
        self.step_records: list[dict] = []
        self.history: list[dict] = []
        # The record key that picks the best model, e.g. "dev_accuracy"; None without dev data.
        self._main_key: str | None = None
        self.best: dict | None = None
        self.best_logits: dict[str, np.ndarray] | None = None  # see TrainResult.best_logits
        self.device = resolve_device(trainer_config.device)
        # What runs: "auto" resolved for this device (the run's config.json records it).
        self.precision = resolve_precision(trainer_config.precision, self.device)
        self._context = distributed.current()
        self._window = _Window()
        self._learning_rate = float("nan")  # the rate of the latest update
        self._stop_signal: int | None = None  # set by SIGINT/SIGTERM: checkpoint, then stop
        self._last_checkpoint: Path | None = None
        self._heap = HeapTrimmer(trainer_config.release_memory_every_steps)
        limit_kernel_caches()  # before this process's first matrix product, where it can be
        # Where the time goes outside the steps: evaluations, checkpoints, saves.
        self.phases = phases if phases is not None else PhaseTimer()
        self._step_seconds: list[float] = []  # this fit's steps after the first
        self._first_step_pending = True
        # The loss's per-label weights (trainer.class_weights), from fit's training set.
        self.class_weights: np.ndarray | None = None
        self._class_weights: torch.Tensor | None = None

    @property
    def _write_dir(self) -> Path | None:
        """Where this process writes: the run directory on rank 0, nowhere on the others."""
        return self.output_dir if self._context.is_main else None

    # -- data ---------------------------------------------------------------------------------

    def encode(self, examples: TextExamples) -> EncodedExamples:
        """Tokenize and pack labelled examples."""
        return encode_examples(self.classifier, self.task, examples, self.progress)

    def _epoch_batches(self, data: EncodedExamples, epoch: int) -> list[list[int]]:
        """The epoch's global batches (one per optimizer update), the same on every process."""
        config = self.config
        size = config.global_batch_size(distributed.current().world_size)
        if config.group_by_length and not config.pad_to_max_length:
            lengths = example_lengths(data.inputs)
            return length_grouped_batches(lengths, size, config.seed, epoch)
        return random_batches(len(data), size, config.seed, epoch)

    def plan_steps(self, num_examples: int) -> int:
        """Total optimizer steps of the run (the schedule's decay horizon)."""
        return self.config.planned_steps(num_examples, distributed.current().world_size)

    # -- loop ---------------------------------------------------------------------------------

    def fit(
        self,
        train: EncodedExamples,
        dev: EncodedExamples | dict[str, EncodedExamples] | None,
        resume: str | Path | None = None,
    ) -> TrainResult:
        """Train for the configured epochs (or ``max_steps``), evaluating on ``dev``.

        ``dev`` is one evaluation set (its metrics are recorded as ``dev_<metric>``) or a
        mapping of split names to sets (``<split>_<metric>``; the first picks the best model).
        ``resume`` is a checkpoint directory (``RUN/checkpoints/step-N``) to continue from:
        the run then ends exactly as if it had never stopped. Under ``torchrun`` (an initialised
        process group) every process calls ``fit``; see :mod:`bertfit.train.distributed`.
        """
        if isinstance(dev, EncodedExamples):
            dev = {"dev": dev}
        if dev:
            self._main_key = metric_prefix(next(iter(dev))) + self.task.main_metric
        self._context = distributed.current()
        self._stop_signal, self._window = None, _Window()
        self._first_step_pending, self._step_seconds = True, []
        # Each process its own dropout masks; a single process is seeded as before.
        torch.manual_seed(self.config.seed + self._context.rank)
        model = self.classifier.model.to(self.device)
        # From the whole training set, which every process holds: the same weights on each.
        self.class_weights = class_weight_vector(self.config.class_weights, self.task, train.labels)
        if self.class_weights is not None:
            self._class_weights = torch.from_numpy(self.class_weights).to(self.device)
        self._scaler = grad_scaler(self.precision, self.device)
        total_steps = self.plan_steps(len(train))
        # The run's own copy: the caller's config keeps the horizon it had.
        self._optimization = self.optimization.with_total_steps(total_steps)
        self._train_model = distributed.wrap_model(model, self.config.parallel)
        optimizer, scheduler = build_optimizer(model, self._optimization)
        self._fingerprint = _data_fingerprint(train)
        position = _Position()
        checkpoint = load_checkpoint(resume) if resume is not None else None
        if checkpoint is not None:
            position = self._restore(checkpoint, optimizer, scheduler, total_steps)
        self._last_checkpoint = checkpoint.path if checkpoint is not None else None
        self._tracker = RunTracker(
            self._write_dir,
            self.logging,
            self.task.metrics,
            resume_step=None if checkpoint is None else checkpoint.step,
        )
        if checkpoint is not None:
            self._tracker.restore_pending(checkpoint.state["tracker_pending"])
            restore_rng_state(checkpoint.rng[self._context.rank])  # last: nothing may draw after
        self.step_records = self._tracker.records
        self._dev = dev  # for evaluations inside an epoch (trainer.eval_every_steps)
        self._total_steps = total_steps
        step = position.step
        try:
            with self._stop_on_signals():
                for epoch in range(position.epoch, self.config.epochs + 1):
                    done = position.batches_done if epoch == position.epoch else 0
                    first = step - done  # steps before this epoch
                    batches = self._epoch_batches(train, epoch)
                    if self.config.max_steps:
                        batches = batches[: total_steps - first]
                    stats = self._train_epoch(
                        epoch, batches, train, optimizer, scheduler, first, done
                    )
                    step = first + len(batches)
                    self._evaluate_and_record(epoch, step, stats, dev)
                    self._window = _Window()
                    finished = step >= total_steps or epoch == self.config.epochs
                    end = _Position(step, epoch + 1, 0)
                    self._checkpoint(end, optimizer, scheduler, finished=finished)
                    if step >= total_steps:
                        break
        finally:
            self._tracker.close()
            self._record_step_times()
        return TrainResult(self.history, self.best, step, self.step_records, self.best_logits)

    def _record_step_times(self) -> None:
        """The steps after the first, as one phase (the first is a phase of its own), and the
        heap trims between steps and after evaluations, as another."""
        seconds, self._step_seconds = self._step_seconds, []
        if seconds:
            self.phases.add("training steps", sum(seconds), steps=len(seconds))
        if self._heap.count:
            self.phases.add("releasing memory", self._heap.seconds, trims=self._heap.count)
            self._heap.seconds, self._heap.count = 0.0, 0

    def _train_epoch(self, epoch, batches, train, optimizer, scheduler, first_step, done=0) -> dict:
        """Train on ``batches[done:]``; ``first_step`` updates came before the epoch."""
        self._train_model.train()
        bar = _EpochBar(
            progress_bar(
                batches[done:],
                desc=f"epoch {epoch}/{self.config.epochs}",
                unit="batch",
                show=self.progress and self._context.is_main,
                delay=0,
            )
        )
        for index, batch in enumerate(bar.batches, start=done + 1):  # batches done after this one
            started = time.perf_counter()
            step = first_step + index
            loss, grad_norm, stop = self._train_step(batch, train, optimizer, scheduler, step)
            self._after_step(step, epoch, len(batch), loss, grad_norm, started, bar, scheduler)
            inside = index < len(batches)  # the epoch's end evaluates and checkpoints anyway
            every = self.config.eval_every_steps
            if every and step % every == 0 and inside:
                self._evaluate_and_record(epoch, step, self._window.stats(scheduler), self._dev)
                self._train_model.train()
                self._window = _Window()
            every = self.config.checkpoint_every_steps
            if stop or (every and step % every == 0 and inside):
                self._checkpoint(_Position(step, epoch, index), optimizer, scheduler)
            if stop:
                raise TrainingInterrupted(self._stop_signal, step, self._last_checkpoint)
        bar.batches.close()
        self._tracker.end_epoch(first_step + len(batches), epoch, self._learning_rate)
        return self._window.stats(scheduler)

    def _train_step(self, batch, train, optimizer, scheduler, step) -> tuple[float, float, bool]:
        """One optimizer update on a global batch: forward, loss and backward on each of this
        process's micro-batches, then clip, step and schedule.

        Returns the global batch's mean loss, the gradient norm before clipping, and whether
        some process was asked to stop (SIGINT or SIGTERM).
        """
        context, accum = self._context, self.config.grad_accum_steps
        local_loss = 0.0  # this process's part of the global batch's mean loss
        for micro in distributed.micro_batches(batch, context, accum, self._train_model):
            with micro.sync:
                loss = micro.weighted(self._batch_loss(self._train_model, train, micro.indices))
                self._backward(micro.for_backward(loss))
            local_loss += loss.item()
        loss_value, stop = self._agree_on_step(local_loss, step)
        grad_norm = self._clip_gradients(optimizer)
        self._learning_rate = scheduler.get_last_lr()[0]  # the rate this update uses
        self._optimizer_step(optimizer)
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return loss_value, grad_norm, stop

    def _agree_on_step(self, local_loss: float, step: int) -> tuple[float, bool]:
        """The global batch's mean loss and whether any process was asked to stop, agreed by
        all processes; a loss that is not finite stops before a bad step reaches the weights."""
        stop_requested = float(self._stop_signal is not None)
        loss_value, stops = distributed.all_reduce_sum([local_loss, stop_requested])
        if not math.isfinite(loss_value):
            kept = f"; the last good checkpoint is {self._last_checkpoint}" * bool(
                self._last_checkpoint
            )
            raise FloatingPointError(f"training loss became {loss_value} at step {step}{kept}")
        return loss_value, stops > 0

    def _clip_gradients(self, optimizer) -> float:
        """Clip as the optimizer config says; returns the gradient norm before clipping."""
        if self._scaler is not None:
            self._scaler.unscale_(optimizer)  # clip and log the true gradient norm
        grad_norm = clip_gradients(optimizer, self._optimization)
        if grad_norm is None:  # clipping is off, but the norm is still worth logging
            grad_norm = global_grad_norm(self.classifier.model.parameters())
        return grad_norm

    def _optimizer_step(self, optimizer) -> None:
        if self._scaler is None:
            optimizer.step()
            return
        self._scaler.step(optimizer)  # skips the update if fp16 gradients overflowed
        self._scaler.update()

    def _after_step(self, step, epoch, examples, loss, grad_norm, started, bar, scheduler) -> None:
        """A step's bookkeeping: heap trim, evaluation window, step log, progress bar.

        The step's phase time runs from its start to the end of this bookkeeping, less the
        heap trim, which is a phase of its own ("releasing memory").
        """
        seconds = time.perf_counter() - started
        trimmed_before = self._heap.seconds
        self._heap.after_step(step)
        self._window.losses.append(loss)
        self._window.examples += examples
        self._tracker.step(
            step=step,
            epoch=epoch,
            loss=loss,
            learning_rate=self._learning_rate,
            grad_norm=grad_norm,
            examples=examples,
            seconds=seconds,
        )
        bar.update(loss, examples, scheduler.get_last_lr()[0], grad_norm)
        in_loop = time.perf_counter() - started - (self._heap.seconds - trimmed_before)
        if self._first_step_pending:  # allocations, lazy initialisation: the warm-up
            self.phases.add("first step", in_loop, step=step)
            self._first_step_pending = False
        else:
            self._step_seconds.append(in_loop)

    def _batch_loss(self, model, data: EncodedExamples, batch: list[int]) -> torch.Tensor:
        """Mean training loss of the examples ``batch`` of ``data`` (forward under autocast).

        ``model`` is the module to call: the classifier, or its DDP/FSDP wrapper, whose
        hooks run only when it is called (hence ``model(packed=...)``, not a method of it).
        """
        labels = torch.from_numpy(data.input_labels[batch]).to(self.device)
        targets = data.soft_targets
        if targets is not None:
            targets = torch.from_numpy(targets[batch]).to(self.device)
        with autocast(self.precision, self.device):
            logits = self._forward(model, data.inputs, batch)
            if self.loss_function is None:
                return self._loss(logits, labels)
            return self.loss_function(logits, labels, targets)

    def _forward(self, model, examples: Sequence[Packed], batch: list[int]) -> torch.Tensor:
        config = self.config
        if config.padding_free and not config.pad_to_max_length:
            return model(packed=packed_batch(examples, batch).to(self.device))
        # The padded path: to each batch's longest example, or to max_seq_length as the
        # reference tutorial does (for comparisons).
        width = self.classifier.info.max_seq_length if config.pad_to_max_length else None
        inputs = batch_tensors(examples, batch, self.classifier.padding_id, width)
        return model(**{name: tensor.to(self.device) for name, tensor in inputs.items()})

    def _backward(self, loss: torch.Tensor) -> None:
        (loss if self._scaler is None else self._scaler.scale(loss)).backward()

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return task_loss(logits, labels, self.task.problem_type, self._class_weights)

    def evaluate(self, data: EncodedExamples) -> dict[str, float]:
        """The task's metrics on encoded examples."""
        return compute_metrics(self.task.metrics, self._predict(data, self.progress), data.labels)

    def _predict(self, data: EncodedExamples, progress: bool | None) -> np.ndarray:
        return predictions_of(self.task, self._logits(data, progress))

    def _logits(self, data: EncodedExamples, progress: bool | None) -> np.ndarray:
        return logits_of_encoded(
            self.classifier, data, self.config.eval_batch_size, progress, self.precision
        )

    def _evaluate_and_record(self, epoch, step, stats, dev: dict | None) -> None:
        record = {"epoch": epoch, "step": step, **stats}
        logits = {}
        for split, data in (dev or {}).items():
            with self.phases.phase("evaluation", step=step, split=split):
                logits[split] = self._logits(data, self.progress)
            predictions = predictions_of(self.task, logits[split])
            metrics = compute_metrics(self.task.metrics, predictions, data.labels)
            record.update({metric_prefix(split) + name: value for name, value in metrics.items()})
            warning = collapse_message(predictions, self.task.label_names, self.task.problem_type)
            if warning:
                record.setdefault("collapsed", []).append(split)
                if self._context.is_main:
                    print(f"warning: {split} {warning}", file=sys.stderr)
        self.history.append(record)
        if self._tracker is not None:
            self._tracker.evaluation(record)
        if self._context.is_main:
            self._log(record)
        improved = self._is_better(record)
        if improved:
            self.best, self.best_logits = record, logits
        if self.output_dir is not None:
            if improved:
                with self.phases.phase("saving model", step=step):
                    self._save_model(self.output_dir / "model")
            if self._write_dir is not None:
                self._write_history()
        # Evaluation's batches leave free heap of other sizes behind; hand it back before
        # training allocates around it.
        self._heap.release()

    def _save_model(self, directory: Path) -> None:
        """Save the model from rank 0 (every process takes part when the model is sharded)."""
        model = distributed.gathered_model(self.classifier.model)
        if self._write_dir is not None:
            TextClassifier(model, self.classifier.tokenizer, self.classifier.info).save_pretrained(
                directory
            )

    # -- checkpoints and signals ----------------------------------------------------------------

    def _checkpoint(self, position: _Position, optimizer, scheduler, finished=False) -> None:
        """Save everything the loop needs to continue from ``position`` (rank 0 writes)."""
        if not self.config.save_checkpoints or self.output_dir is None:
            return
        with self.phases.phase("checkpoint", step=position.step):
            self._write_checkpoint(position, optimizer, scheduler, finished)

    def _write_checkpoint(self, position: _Position, optimizer, scheduler, finished) -> None:
        rng = distributed.gather_objects(capture_rng_state())  # first: saving draws nothing
        model_state = distributed.model_state_dict(self.classifier.model)
        optimizer_state = {
            "optimizer": distributed.optimizer_state_dict(self.classifier.model, optimizer),
            "scheduler": scheduler.state_dict(),
        }
        if self._scaler is not None:  # fp16: the loss scale it has learned
            optimizer_state["grad_scaler"] = self._scaler.state_dict()
        directory = checkpoints_dir(self.output_dir)
        error: CheckpointError | None = None
        if self._context.is_main:
            try:
                save_checkpoint(
                    directory,
                    position.step,
                    model_state=model_state,
                    optimizer_state=optimizer_state,
                    rng_states=rng,
                    trainer_state=self._trainer_state(position, finished),
                    keep=self.config.keep_checkpoints,
                )
            except CheckpointError as failure:
                error = failure
        if not distributed.broadcast_flag(error is None):
            raise error or CheckpointError("process 0 could not write the checkpoint")
        self._last_checkpoint = directory / f"step-{position.step}"

    def _trainer_state(self, position: _Position, finished: bool) -> dict:
        return {
            "epoch": position.epoch,
            "batches_done": position.batches_done,
            "finished": finished,
            "total_steps": self._total_steps,
            "world_size": self._context.world_size,
            "global_batch_size": self.config.global_batch_size(self._context.world_size),
            "data_fingerprint": self._fingerprint,
            "learning_rate": self._learning_rate,
            "window_losses": self._window.losses,
            "window_examples": self._window.examples,
            "tracker_pending": self._tracker.pending,
            "history": self.history,
            "best": self.best,
        }

    def _restore(self, checkpoint, optimizer, scheduler, total_steps: int) -> _Position:
        """Load a checkpoint's model, optimizer, schedule and loop state; return its position."""
        state = checkpoint.state
        world_size = self._context.world_size
        expected = {
            "world_size": world_size,
            "global_batch_size": self.config.global_batch_size(world_size),
            "total_steps": total_steps,
            "data_fingerprint": self._fingerprint,
        }
        for key, value in expected.items():
            if state[key] != value:
                raise CheckpointError(
                    f"{checkpoint.path}: written with {key} {state[key]!r} but this run has "
                    f"{value!r}; resume with the run's own settings, data and process count"
                )
        model = self.classifier.model
        distributed.load_model_state_dict(model, checkpoint.model)
        distributed.load_optimizer_state_dict(model, optimizer, checkpoint.optimizer["optimizer"])
        scheduler.load_state_dict(checkpoint.optimizer["scheduler"])
        if self._scaler is not None and "grad_scaler" in checkpoint.optimizer:
            self._scaler.load_state_dict(checkpoint.optimizer["grad_scaler"])
        self.history = list(state["history"])
        self.best, self.best_logits = state["best"], None  # evaluated before the resume
        self._window = _Window(list(state["window_losses"]), state["window_examples"])
        self._learning_rate = state["learning_rate"]
        return _Position(checkpoint.step, state["epoch"], state["batches_done"])

    @contextlib.contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
        """While training, SIGINT and SIGTERM ask for a checkpoint after the current step.

        Processes agree on stopping at each step (see ``_train_step``), so a signal reaching
        one process of a job stops all of them at the same step. A second Ctrl-C stops at once.
        Without a run directory (nothing to save) the signals keep their usual meaning.
        """
        main_thread = threading.current_thread() is threading.main_thread()
        if not (main_thread and self.config.save_checkpoints and self.output_dir is not None):
            yield
            return

        def request_stop(signum, frame) -> None:
            if self._stop_signal is not None:
                raise KeyboardInterrupt
            self._stop_signal = signum
            if self._context.is_main:
                print(
                    "bertfit: stopping after this step to save a checkpoint "
                    "(Ctrl-C again stops at once)",
                    file=sys.stderr,
                )

        signals = (signal.SIGINT, signal.SIGTERM)
        previous = {signum: signal.signal(signum, request_stop) for signum in signals}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _is_better(self, record: dict) -> bool:
        key = self._main_key
        if key is None:
            return True  # no dev set: the latest model is the one to keep
        return self.best is None or record[key] > self.best[key]

    def _write_history(self) -> None:
        lines = "".join(json.dumps(record) + "\n" for record in self.history)
        atomic_write_text(self.output_dir / "history.jsonl", lines)

    def _log(self, record: dict, write: Callable[[str], None] = print) -> None:
        metrics = "  ".join(
            f"{key} {value:.4f}" for key, value in record.items() if key.startswith("dev_")
        )
        write(
            f"epoch {record['epoch']}  step {record['step']}  loss {record['train_loss']:.4f}  "
            f"{record['examples_per_second']:.1f} examples/s  {metrics}".rstrip()
        )
