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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from bertfit.config import atomic_write_text
from bertfit.data.batching import length_grouped_batches, random_batches
from bertfit.data.readers import TextExamples
from bertfit.data.tasks import TaskSpec
from bertfit.inference import Packed, TextClassifier, predict_logits, to_tensors
from bertfit.train.config import TrainerConfig
from bertfit.train.metrics import compute_metrics
from bertfit.train.optim import OptimizationConfig, build_optimizer, clip_gradients


@dataclass
class EncodedExamples:
    """Packed model inputs with their labels."""

    inputs: list[Packed]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.inputs)


@dataclass
class TrainResult:
    """What a finished run achieved."""

    history: list[dict] = field(default_factory=list)
    best: dict | None = None
    steps: int = 0


def evaluate_encoded(
    classifier: TextClassifier, task: TaskSpec, data: EncodedExamples, batch_size: int = 64
) -> dict[str, float]:
    """The task's metrics of ``classifier`` on already encoded examples."""
    logits = predict_logits(classifier.model, data.inputs, classifier.padding_id, batch_size)
    predictions = logits[:, 0] if task.regression else logits.argmax(axis=-1)
    return compute_metrics(task.metrics, predictions, data.labels)


def metric_prefix(split: str) -> str:
    """Prefix of a dev split's metrics in records: ``dev_`` or ``dev_matched_`` (MNLI)."""
    return f"{split}_"


def encode_examples(
    classifier: TextClassifier, task: TaskSpec, examples: TextExamples
) -> EncodedExamples:
    """Tokenize and pack labelled examples (float targets for regression tasks)."""
    dtype = np.float32 if task.regression else np.int64
    return EncodedExamples(
        classifier.encode(examples.columns), np.asarray(examples.labels, dtype=dtype)
    )


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
    ) -> None:
        self.classifier = classifier
        self.task = task
        self.config = trainer_config
        self.optimization = optimization
        self.output_dir = Path(output_dir) if output_dir is not None else None
        # None: a progress bar only when stderr is a terminal.
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.history: list[dict] = []
        # The record key that picks the best model, e.g. "dev_accuracy"; None without dev data.
        self._main_key: str | None = None
        self.best: dict | None = None

    # -- data ---------------------------------------------------------------------------------

    def encode(self, examples: TextExamples) -> EncodedExamples:
        """Tokenize and pack labelled examples."""
        return encode_examples(self.classifier, self.task, examples)

    def _epoch_batches(self, data: EncodedExamples, epoch: int) -> list[list[int]]:
        config = self.config
        if config.group_by_length and not config.pad_to_max_length:
            lengths = [len(ids) for ids, _ in data.inputs]
            return length_grouped_batches(lengths, config.batch_size, config.seed, epoch)
        return random_batches(len(data), config.batch_size, config.seed, epoch)

    def plan_steps(self, num_examples: int) -> int:
        """Total optimizer steps of the run (the schedule's decay horizon)."""
        per_epoch = math.ceil(num_examples / self.config.batch_size)
        total = per_epoch * self.config.epochs
        return min(total, self.config.max_steps) if self.config.max_steps else total

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
        step = 0
        for epoch in range(1, self.config.epochs + 1):
            batches = self._epoch_batches(train, epoch)
            if self.config.max_steps:
                batches = batches[: total_steps - step]
            stats = self._train_epoch(epoch, batches, train, optimizer, scheduler, step)
            step += len(batches)
            self._evaluate_and_record(epoch, step, stats, dev)
            if step >= total_steps:
                break
        return TrainResult(self.history, self.best, step)

    def _train_epoch(self, epoch, batches, train, optimizer, scheduler, first_step) -> dict:
        model = self.classifier.model
        model.train()
        seq_length = self.classifier.info.max_seq_length if self.config.pad_to_max_length else None
        losses: list[float] = []
        examples = 0
        started = time.perf_counter()
        bar = tqdm(
            batches,
            desc=f"epoch {epoch}/{self.config.epochs}",
            unit="batch",
            disable=not self.progress,
            leave=False,
            dynamic_ncols=True,
        )
        for batch in bar:
            inputs = to_tensors(
                [train.inputs[i] for i in batch], self.classifier.padding_id, seq_length
            )
            labels = torch.from_numpy(train.labels[batch])
            loss = self._loss(model(**inputs), labels)
            loss_value = loss.item()
            if not math.isfinite(loss_value):  # stop before a bad step reaches the weights
                raise FloatingPointError(
                    f"training loss became {loss_value} at step {first_step + len(losses) + 1}"
                )
            loss.backward()
            clip_gradients(optimizer, self.optimization)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss_value)
            examples += len(batch)
            elapsed = time.perf_counter() - started
            bar.set_postfix(
                loss=f"{np.mean(losses[-20:]):.4f}",
                lr=f"{scheduler.get_last_lr()[0]:.2e}",
                ex_s=f"{examples / elapsed:.1f}",
                refresh=False,
            )
        bar.close()
        elapsed = time.perf_counter() - started
        return {
            "train_loss": float(np.mean(losses)) if losses else float("nan"),
            "learning_rate": float(scheduler.get_last_lr()[0]),
            "examples_per_second": examples / elapsed if elapsed > 0 else 0.0,
            "train_seconds": elapsed,
            "train_examples": examples,
        }

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
            metrics = self.evaluate(data)
            record.update({metric_prefix(split) + name: value for name, value in metrics.items()})
        self.history.append(record)
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
