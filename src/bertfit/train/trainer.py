"""The training loop: fit a :class:`TextClassifier` on a task, evaluate on dev after each epoch.

The loop is deliberately plain PyTorch: length-grouped batches padded to their longest pair,
forward, loss, backward, AdamW step, schedule step. Each evaluation appends a record to the
metric history and, when the task's main metric improves, the model is saved.
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
import torch.nn.functional as F

from bertfit.config import atomic_write_text
from bertfit.data.batching import length_grouped_batches, random_batches
from bertfit.data.encoding import ChunkedTexts, encode_stream
from bertfit.data.readers import TextExamples
from bertfit.data.tasks import TaskSpec
from bertfit.inference import Packed, TextClassifier, mean_by_owner, predict_logits, to_tensors
from bertfit.progress import bar as progress_bar
from bertfit.progress import enabled as progress_enabled
from bertfit.text.ragged import example_lengths
from bertfit.train.config import LoggingConfig, TrainerConfig
from bertfit.train.metrics import collapse_message, compute_metrics
from bertfit.train.optim import OptimizationConfig, build_optimizer, clip_gradients
from bertfit.train.tracking import RunTracker, global_grad_norm


@dataclass
class EncodedExamples:
    """Packed model inputs with the labels of their texts.

    Without windows each input is one text (``owners`` None). With windows a long text gives
    several inputs; ``owners[i]`` is the text of input ``i``, which trains with that text's
    label, and evaluation averages a text's window logits before comparing with its label.
    ``inputs`` is a :class:`~bertfit.text.ragged.RaggedPacked` when made by
    :func:`encode_examples`, or any sequence of packed pairs.
    """

    inputs: Sequence[Packed]
    labels: np.ndarray
    owners: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def input_labels(self) -> np.ndarray:
        """The label of every input (its text's label)."""
        return self.labels if self.owners is None else self.labels[self.owners]


@dataclass
class TrainResult:
    """What a finished run achieved."""

    history: list[dict] = field(default_factory=list)
    best: dict | None = None
    steps: int = 0
    # Per-step records (see bertfit.train.tracking), also written to RUN/steps.jsonl.
    step_records: list[dict] = field(default_factory=list)


def evaluate_encoded(
    classifier: TextClassifier, task: TaskSpec, data: EncodedExamples, batch_size: int = 64
) -> dict[str, float]:
    """The task's metrics of ``classifier`` on already encoded examples."""
    return compute_metrics(
        task.metrics, predict_encoded(classifier, task, data, batch_size), data.labels
    )


def predict_encoded(
    classifier: TextClassifier,
    task: TaskSpec,
    data: EncodedExamples,
    batch_size: int = 64,
    progress: bool | None = None,
) -> np.ndarray:
    """Predicted class ids (or scores, for regression) of encoded examples."""
    logits = predict_logits(
        classifier.model, data.inputs, classifier.padding_id, batch_size, progress
    )
    logits = mean_by_owner(logits, data.owners, len(data.labels))
    return logits[:, 0] if task.regression else logits.argmax(axis=-1)


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


def metric_prefix(split: str) -> str:
    """Prefix of a dev split's metrics in records: ``dev_`` or ``dev_matched_`` (MNLI)."""
    return f"{split}_"


def encode_examples(
    classifier: TextClassifier,
    task: TaskSpec,
    examples: TextExamples | ChunkedTexts,
    progress: bool | None = None,
) -> EncodedExamples:
    """Tokenize and pack labelled examples (float targets for regression tasks).

    The texts are encoded a chunk at a time into a compact store (see
    :func:`bertfit.data.encoding.encode_stream`), so a large file never lives in memory as
    Python strings or lists.
    """
    dtype = np.float32 if task.regression else np.int64
    labels = np.asarray(examples.labels, dtype=dtype)
    inputs, owners = encode_stream(
        classifier.processor, examples, classifier.info.window_stride, progress
    )
    return EncodedExamples(inputs, labels, owners)


def evaluate_examples(
    classifier: TextClassifier, task: TaskSpec, examples: TextExamples, batch_size: int = 64
) -> dict[str, float]:
    """The task's metrics of ``classifier`` on labelled text examples."""
    return evaluate_encoded(
        classifier, task, encode_examples(classifier, task, examples), batch_size
    )


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
    ) -> None:
        self.classifier = classifier
        self.task = task
        self.config = trainer_config
        self.optimization = optimization
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

    # -- data ---------------------------------------------------------------------------------

    def encode(self, examples: TextExamples) -> EncodedExamples:
        """Tokenize and pack labelled examples."""
        return encode_examples(self.classifier, self.task, examples, self.progress)

    def _epoch_batches(self, data: EncodedExamples, epoch: int) -> list[list[int]]:
        config = self.config
        if config.group_by_length and not config.pad_to_max_length:
            lengths = example_lengths(data.inputs)
            return length_grouped_batches(lengths, config.batch_size, config.seed, epoch)
        return random_batches(len(data), config.batch_size, config.seed, epoch)

    def plan_steps(self, num_examples: int) -> int:
        """Total optimizer steps of the run (the schedule's decay horizon)."""
        return self.config.planned_steps(num_examples)

    # -- loop ---------------------------------------------------------------------------------

    def fit(
        self,
        train: EncodedExamples,
        dev: EncodedExamples | dict[str, EncodedExamples] | None,
    ) -> TrainResult:
        """Train for the configured epochs (or ``max_steps``), evaluating on ``dev``.

        ``dev`` is one evaluation set (its metrics are recorded as ``dev_<metric>``) or a
        mapping of split names to sets (``<split>_<metric>``; the first picks the best model).
        """
        if isinstance(dev, EncodedExamples):
            dev = {"dev": dev}
        if dev:
            self._main_key = metric_prefix(next(iter(dev))) + self.task.main_metric
        torch.manual_seed(self.config.seed)
        model = self.classifier.model
        total_steps = self.plan_steps(len(train))
        self.optimization.total_steps = total_steps
        optimizer, scheduler = build_optimizer(model, self.optimization)
        self._tracker = RunTracker(self.output_dir, self.logging, self.task.metrics)
        self.step_records = self._tracker.records
        self._dev = dev  # for evaluations inside an epoch (trainer.eval_every_steps)
        step = 0
        try:
            for epoch in range(1, self.config.epochs + 1):
                batches = self._epoch_batches(train, epoch)
                if self.config.max_steps:
                    batches = batches[: total_steps - step]
                stats = self._train_epoch(epoch, batches, train, optimizer, scheduler, step)
                step += len(batches)
                self._evaluate_and_record(epoch, step, stats, dev)
                if step >= total_steps:
                    break
        finally:
            self._tracker.close()
        return TrainResult(self.history, self.best, step, self.step_records)

    def _train_epoch(self, epoch, batches, train, optimizer, scheduler, first_step) -> dict:
        model = self.classifier.model
        model.train()
        seq_length = self.classifier.info.max_seq_length if self.config.pad_to_max_length else None
        losses: list[float] = []
        examples = 0
        learning_rate = float("nan")
        started = time.perf_counter()
        # The steps since the last evaluation: what the next evaluation record describes.
        window, window_examples, window_started = 0, 0, started
        bar = progress_bar(
            batches,
            desc=f"epoch {epoch}/{self.config.epochs}",
            unit="batch",
            show=self.progress,
            delay=0,
        )
        for batch in bar:
            step_started = time.perf_counter()
            inputs = to_tensors(
                [train.inputs[i] for i in batch], self.classifier.padding_id, seq_length
            )
            labels = torch.from_numpy(train.input_labels[batch])
            loss = self._loss(model(**inputs), labels)
            loss_value = loss.item()
            if not math.isfinite(loss_value):  # stop before a bad step reaches the weights
                raise FloatingPointError(
                    f"training loss became {loss_value} at step {first_step + len(losses) + 1}"
                )
            loss.backward()
            grad_norm = clip_gradients(optimizer, self.optimization)
            if grad_norm is None:  # clipping is off, but the norm is still worth logging
                grad_norm = global_grad_norm(model.parameters())
            learning_rate = scheduler.get_last_lr()[0]  # the rate this update uses
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss_value)
            examples += len(batch)
            self._tracker.step(
                step=first_step + len(losses),
                epoch=epoch,
                loss=loss_value,
                learning_rate=learning_rate,
                grad_norm=grad_norm,
                examples=len(batch),
                seconds=time.perf_counter() - step_started,
            )
            elapsed = time.perf_counter() - started
            bar.set_postfix(
                loss=f"{np.mean(losses[-20:]):.4f}",
                lr=f"{scheduler.get_last_lr()[0]:.2e}",
                ex_s=f"{examples / elapsed:.1f}",
                gnorm=f"{grad_norm:.2f}",
                refresh=False,
            )
            step, every = first_step + len(losses), self.config.eval_every_steps
            if every and step % every == 0 and len(losses) < len(batches):
                window_losses = losses[window:]
                stats = _window_stats(
                    window_losses, examples - window_examples, window_started, scheduler
                )
                self._evaluate_and_record(epoch, step, stats, self._dev)
                model.train()
                window, window_examples = len(losses), examples
                window_started = time.perf_counter()
        bar.close()
        self._tracker.end_epoch(first_step + len(losses), epoch, learning_rate)
        return _window_stats(losses[window:], examples - window_examples, window_started, scheduler)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.task.regression:
            return F.mse_loss(logits.squeeze(-1).float(), labels)
        return F.cross_entropy(logits.float(), labels)

    def evaluate(self, data: EncodedExamples) -> dict[str, float]:
        """The task's metrics on encoded examples."""
        return evaluate_encoded(self.classifier, self.task, data, self.config.eval_batch_size)

    def _evaluate_and_record(self, epoch, step, stats, dev: dict | None) -> None:
        record = {"epoch": epoch, "step": step, **stats}
        for split, data in (dev or {}).items():
            predictions = predict_encoded(
                self.classifier, self.task, data, self.config.eval_batch_size, self.progress
            )
            metrics = compute_metrics(self.task.metrics, predictions, data.labels)
            record.update({metric_prefix(split) + name: value for name, value in metrics.items()})
            warning = collapse_message(predictions, self.task.label_names, self.task.regression)
            if warning:
                record.setdefault("collapsed", []).append(split)
                print(f"warning: {split} {warning}", file=sys.stderr)
        self.history.append(record)
        if self._tracker is not None:
            self._tracker.evaluation(record)
        self._log(record)
        improved = self._is_better(record)
        if improved:
            self.best = record
        if self.output_dir is not None:
            if improved:
                self.classifier.save_pretrained(self.output_dir / "model")
            self._write_history()

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
