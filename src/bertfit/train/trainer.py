"""The training loop: fit a :class:`TextClassifier` on a task, evaluate on dev after each epoch.

The loop is deliberately plain PyTorch: forward, loss, backward, AdamW step, schedule step.
Batches group examples of similar length (random between epochs) and, by default, feed the
model only their real tokens laid end to end (padding-free, :mod:`bertfit.model.padding_free`);
``padding_free: false`` pads each batch to its longest example instead, and
``pad_to_max_length`` to ``max_seq_length`` as the reference tutorial does. Each evaluation
appends a record to the metric history; :class:`~bertfit.train.best_model.BestModel` keeps the
best, what a checkpoint holds is :mod:`bertfit.train.training_state`'s, and callbacks
(:mod:`bertfit.train.callbacks`) see every evaluation and may stop training.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bertfit.config import atomic_write_text
from bertfit.data.batching import length_grouped_batches, random_batches
from bertfit.data.readers import TextExamples
from bertfit.data.tasks import TaskSpec
from bertfit.errors import TrainingInterrupted
from bertfit.inference import Packed, TextClassifier, batch_tensors, padding_free_batch
from bertfit.precision import autocast, grad_scaler, resolve_device, resolve_precision
from bertfit.progress import bar as progress_bar
from bertfit.progress import enabled as progress_enabled
from bertfit.text.ragged import example_lengths
from bertfit.train import distributed
from bertfit.train.best_model import BestModel
from bertfit.train.callbacks import Evaluation, EvaluationCallback, asked_to_stop
from bertfit.train.checkpoint import restore_rng_state
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
from bertfit.train.signals import StopSignals
from bertfit.train.tracking import RunTracker, global_grad_norm
from bertfit.train.training_state import (
    LoopState,
    Position,
    RunShape,
    TrainedParts,
    TrainingCheckpoints,
    Window,
    data_fingerprint,
)

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
    # Whether a callback ended the run before its planned steps (see bertfit.train.callbacks),
    # and then where and why: {"step", "epoch", "reason"}.
    stopped_early: bool = False
    stopped: dict | None = None


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


class Trainer:
    """Fine-tunes a classifier; saves the best model and the metric history in ``output_dir``.

    The loop is this class; the choice of the best model is :class:`BestModel`'s, what a
    checkpoint keeps is :class:`TrainingCheckpoints`'s, and Ctrl-C/SIGTERM are
    :class:`StopSignals`'. ``callbacks`` see every evaluation and may stop training (see
    :mod:`bertfit.train.callbacks`).
    """

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
        callbacks: Sequence[EvaluationCallback] = (),
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
        self.callbacks = list(callbacks)
        self._tracker: RunTracker | None = None
        self.step_records: list[dict] = []
        self.history: list[dict] = []
        self.best_model = BestModel()
        self.device = resolve_device(trainer_config.device)
        # What runs: "auto" resolved for this device (the run's config.json records it).
        self.precision = resolve_precision(trainer_config.precision, self.device)
        self._context = distributed.current()
        self._checkpoints = TrainingCheckpoints(self.output_dir, trainer_config, self.device)
        self._signals = StopSignals(announce=self._context.is_main)
        self._heap = HeapTrimmer(trainer_config.release_memory_every_steps)
        limit_kernel_caches()  # before this process's first matrix product, where it can be
        # Where the time goes outside the steps: evaluations, checkpoints, saves.
        self.phases = phases if phases is not None else PhaseTimer()
        # The state of one fit (each fit starts it afresh, see _start_fit).
        self._train_model: torch.nn.Module | None = None  # the model, or its DDP/FSDP wrapper
        self._parts: TrainedParts | None = None  # model, optimizer, schedule, loss scaler
        self._shape: RunShape | None = None  # what a checkpoint must agree on to resume
        self._dev: dict[str, EncodedExamples] | None = None
        self._window = Window()
        self._learning_rate = float("nan")  # the rate of the latest update
        self._stopped_early = False  # a callback asked to stop
        self._stopped: dict | None = None  # then where and why (TrainResult.stopped)
        # The loss's per-label weights (trainer.class_weights), from fit's training set.
        self.class_weights: np.ndarray | None = None
        self._class_weights: torch.Tensor | None = None
        self._step_seconds: list[float] = []  # this fit's steps after the first
        self._first_step_pending = True

    @property
    def best(self) -> dict | None:
        """The best evaluation record so far (see :class:`BestModel`)."""
        return self.best_model.record

    @property
    def best_logits(self) -> dict[str, np.ndarray] | None:
        """See :attr:`TrainResult.best_logits`."""
        return self.best_model.logits

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
        A callback may end the run early (``TrainResult.stopped_early``).
        """
        position = self._start_fit(train, dev, resume)
        total_steps = self._shape.total_steps
        step = position.step
        try:
            with self._signals.catching(self._checkpoints.enabled):
                for epoch in range(position.epoch, self.config.epochs + 1):
                    done = position.batches_done if epoch == position.epoch else 0
                    first = step - done  # steps before this epoch
                    batches = self._epoch_batches(train, epoch)
                    if self.config.max_steps:
                        batches = batches[: total_steps - first]
                    step = self._train_epoch(epoch, batches, train, first, done)
                    if self._stopped_early:  # a callback stopped it at an evaluation inside
                        break
                    stats = self._window.stats(self._parts.scheduler)
                    self._stopped_early = self._evaluate_and_record(epoch, step, stats)
                    self._window = Window()
                    finished = step >= total_steps or epoch == self.config.epochs
                    finished = finished or self._stopped_early
                    self._checkpoint(Position(step, epoch + 1, 0), finished=finished)
                    if finished:
                        break
        finally:
            self._tracker.close()
            self._record_step_times()
        return TrainResult(
            self.history,
            self.best,
            step,
            self.step_records,
            self.best_logits,
            self._stopped_early,
            self._stopped,
        )

    def _start_fit(self, train: EncodedExamples, dev, resume) -> Position:
        """Set up one fit: the model on its device (wrapped for the job), the optimizer and
        schedule, the step log; and the checkpoint's state when resuming. Returns where the
        loop starts."""
        if isinstance(dev, EncodedExamples):
            dev = {"dev": dev}
        self._dev = dev or None  # also for evaluations inside an epoch (eval_every_steps)
        main_metric = self.config.main_metric_of(self.task)  # trainer.main_metric, checked
        main_key = metric_prefix(next(iter(dev))) + main_metric if dev else None
        self.best_model = BestModel(main_key)
        self.history = []
        self._context = distributed.current()
        distributed.check_device(self.device)  # before any collective would fail on it
        self._signals.announce = self._context.is_main
        self._window, self._stopped_early, self._stopped = Window(), False, None
        self._first_step_pending, self._step_seconds = True, []
        self._learning_rate = float("nan")
        # Each process its own dropout masks; a single process is seeded as before.
        torch.manual_seed(self.config.seed + self._context.rank)
        model = self.classifier.model.to(self.device)
        # From the whole training set, which every process holds: the same weights on each,
        # and on resume the same as before.
        self.class_weights = class_weight_vector(self.config.class_weights, self.task, train.labels)
        self._class_weights = None
        if self.class_weights is not None:
            self._class_weights = torch.from_numpy(self.class_weights).to(self.device)
        scaler = grad_scaler(self.precision, self.device)
        world_size = self._context.world_size
        total_steps = self.plan_steps(len(train))
        # The run's own copy: the caller's config keeps the horizon it had.
        self._optimization = self.optimization.with_total_steps(total_steps)
        self._train_model = distributed.wrap_model(model, self.config.parallel)
        optimizer, scheduler = build_optimizer(model, self._optimization)
        self._parts = TrainedParts(model, optimizer, scheduler, scaler)
        self._shape = RunShape(
            world_size=world_size,
            global_batch_size=self.config.global_batch_size(world_size),
            total_steps=total_steps,
            data_fingerprint=data_fingerprint(train.inputs, train.input_labels),
        )
        self._checkpoints.last = None
        loop, rng = LoopState(Position()), None
        if resume is not None:
            loop, rng = self._checkpoints.restore(resume, self._parts, self._shape)
            self.history = loop.history
            self.best_model = BestModel(main_key, loop.best)  # evaluated before the resume
            self._window, self._learning_rate = loop.window, loop.learning_rate
        self._tracker = RunTracker(
            self._write_dir,
            self.logging,
            self.task.metrics,
            resume_step=None if resume is None else loop.position.step,
        )
        self._tracker.restore_pending(loop.tracker_pending)
        self.step_records = self._tracker.records
        if rng is not None:
            restore_rng_state(rng)  # last: nothing may draw after
        return loop.position

    def _record_step_times(self) -> None:
        """The steps after the first, as one phase (the first is a phase of its own), and the
        heap trims between steps and after evaluations, as another."""
        seconds, self._step_seconds = self._step_seconds, []
        if seconds:
            self.phases.add("training steps", sum(seconds), steps=len(seconds))
        if self._heap.count:
            self.phases.add("releasing memory", self._heap.seconds, trims=self._heap.count)
            self._heap.seconds, self._heap.count = 0.0, 0

    def _train_epoch(self, epoch, batches, train, first_step, done=0) -> int:
        """Train on ``batches[done:]``; ``first_step`` updates came before the epoch. Returns
        the step reached (earlier than the epoch's end if a callback stopped the run)."""
        self._train_model.train()
        optimizer, scheduler = self._parts.optimizer, self._parts.scheduler
        bar = _EpochBar(
            progress_bar(
                batches[done:],
                desc=f"epoch {epoch}/{self.config.epochs}",
                unit="batch",
                show=self.progress and self._context.is_main,
                delay=0,
            )
        )
        step = first_step + done
        for index, batch in enumerate(bar.batches, start=done + 1):  # batches done after this one
            started = time.perf_counter()
            step = first_step + index
            loss, grad_norm, stop = self._train_step(batch, train, optimizer, scheduler, step)
            self._after_step(step, epoch, len(batch), loss, grad_norm, started, bar, scheduler)
            inside = index < len(batches)  # the epoch's end evaluates and checkpoints anyway
            every = self.config.eval_every_steps
            if every and step % every == 0 and inside:
                stats = self._window.stats(scheduler)
                self._stopped_early = self._evaluate_and_record(epoch, step, stats)
                self._train_model.train()
                self._window = Window()
            if self._stopped_early:
                self._tracker.end_epoch(step, epoch, self._learning_rate)
                self._checkpoint(Position(step, epoch, index), finished=True)
                break
            every = self.config.checkpoint_every_steps
            if stop or (every and step % every == 0 and inside):
                self._checkpoint(Position(step, epoch, index))
            if stop:
                raise TrainingInterrupted(self._signals.signum, step, self._checkpoints.last)
        bar.batches.close()
        if not self._stopped_early:
            self._tracker.end_epoch(step, epoch, self._learning_rate)
        return step

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
        # The rate this update uses: the first group's, the schedule's own (under layer decay
        # the head's; lower layers learn at a fixed fraction of it).
        self._learning_rate = scheduler.get_last_lr()[0]
        self._optimizer_step(optimizer)
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return loss_value, grad_norm, stop

    def _agree_on_step(self, local_loss: float, step: int) -> tuple[float, bool]:
        """The global batch's mean loss and whether any process was asked to stop, agreed by
        all processes; a loss that is not finite stops before a bad step reaches the weights."""
        stop_requested = float(self._signals.signum is not None)
        loss_value, stops = distributed.all_reduce_sum(
            [local_loss, stop_requested], device=self.device
        )
        if not math.isfinite(loss_value):
            last = self._checkpoints.last
            kept = f"; the last good checkpoint is {last}" * bool(last)
            raise FloatingPointError(f"training loss became {loss_value} at step {step}{kept}")
        return loss_value, stops > 0

    def _clip_gradients(self, optimizer) -> float:
        """Clip as the optimizer config says; returns the gradient norm before clipping."""
        scaler = self._parts.scaler
        if scaler is not None:
            scaler.unscale_(optimizer)  # clip and log the true gradient norm
        grad_norm = clip_gradients(optimizer, self._optimization)
        if grad_norm is None:  # clipping is off, but the norm is still worth logging
            grad_norm = global_grad_norm(self.classifier.model.parameters())
        return grad_norm

    def _optimizer_step(self, optimizer) -> None:
        scaler = self._parts.scaler
        if scaler is None:
            optimizer.step()
            return
        scaler.step(optimizer)  # skips the update if fp16 gradients overflowed
        scaler.update()

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
        hooks run only when it is called (hence ``model(padding_free=...)``, not a method of it).
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
            return model(padding_free=padding_free_batch(examples, batch).to(self.device))
        # The padded path: to each batch's longest example, or to max_seq_length as the
        # reference tutorial does (for comparisons).
        width = self.classifier.info.max_seq_length if config.pad_to_max_length else None
        inputs = batch_tensors(examples, batch, self.classifier.padding_id, width)
        return model(**{name: tensor.to(self.device) for name, tensor in inputs.items()})

    def _backward(self, loss: torch.Tensor) -> None:
        scaler = self._parts.scaler
        (loss if scaler is None else scaler.scale(loss)).backward()

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

    def _evaluate_and_record(self, epoch: int, step: int, stats: dict) -> bool:
        """Evaluate on the dev sets, record, keep the model if it is the best; then ask the
        callbacks. Returns whether they (on any process) asked to stop."""
        record = {"epoch": epoch, "step": step, **stats}
        logits = {}
        for split, data in (self._dev or {}).items():
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
        self._tracker.evaluation(record)
        if self._context.is_main:
            self._log(record)
        improved = self.best_model.consider(record, logits)
        if self.output_dir is not None:
            if improved:
                with self.phases.phase("saving model", step=step):
                    self._save_model(self.output_dir / "model")
            if self._write_dir is not None:
                self._write_history()
        # Evaluation's batches leave free heap of other sizes behind; hand it back before
        # training allocates around it.
        self._heap.release()
        evaluation = Evaluation(
            step, epoch, record, tuple(self.history), self.best, improved, self.best_model.key
        )
        reason = asked_to_stop(self.callbacks, evaluation, self.device)
        if reason is not None:
            self._stopped = {"step": step, "epoch": epoch, "reason": reason}
        return reason is not None

    def _save_model(self, directory: Path) -> None:
        """Save the model from rank 0 (every process takes part when the model is sharded)."""
        model = distributed.gathered_model(self.classifier.model)
        if self._write_dir is not None:
            TextClassifier(model, self.classifier.tokenizer, self.classifier.info).save_pretrained(
                directory
            )

    def _checkpoint(self, position: Position, finished: bool = False) -> None:
        """Save everything the loop needs to continue from ``position`` (rank 0 writes)."""
        if not self._checkpoints.enabled:
            return
        loop = LoopState(
            position,
            finished,
            self._learning_rate,
            self._window,
            self._tracker.pending,
            self.history,
            self.best,
            self._stopped,
        )
        with self.phases.phase("checkpoint", step=position.step):
            self._checkpoints.save(self._parts, self._shape, loop)

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
