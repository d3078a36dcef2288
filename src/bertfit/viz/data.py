"""The numbers each figure draws, computed by bertfit and kept apart from the drawing.

Every figure in :mod:`bertfit.viz.figures` draws one of these objects and nothing else, so what
a plot shows can be checked against bertfit's own values (the schedule's points, the packer's
arrays, the logged records, the model's predictions), and ``bertfit plot ... --data FILE.json``
can save the same numbers beside the picture. This module imports neither matplotlib nor torch
(except :func:`confusion_data`, which runs the model).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bertfit.errors import ConfigError
from bertfit.problem import REGRESSION
from bertfit.train.optim import OptimizationConfig, learning_rate_schedule
from bertfit.train.tracking import STEP_LOG_FILE, read_jsonl

HISTORY_FILE = "history.jsonl"
INPUT_NAMES = ("input_word_ids", "input_mask", "input_type_ids")


def _plain(value: Any) -> Any:
    """JSON-ready copy: arrays become lists."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# -- learning-rate schedule ---------------------------------------------------------------------


@dataclass
class ScheduleData:
    """Points of a warmup-then-decay schedule, and the rates a run actually used (if known).

    ``steps`` count updates already applied, as :func:`learning_rate_schedule` does;
    ``used_steps``/``used_learning_rates`` come from a run's ``steps.jsonl`` (the rate of
    update ``k`` is drawn at ``k - 1``, where the schedule gives it).
    """

    steps: np.ndarray
    learning_rates: np.ndarray
    total_steps: int
    warmup_steps: int
    peak_learning_rate: float
    used_steps: np.ndarray | None = None
    used_learning_rates: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of everything drawn."""
        return _plain(self.__dict__)


def schedule_data(
    config: OptimizationConfig, num_points: int = 1001, used: Sequence[dict] | None = None
) -> ScheduleData:
    """The schedule of ``config`` at ``num_points`` evenly spaced steps from 0 to total_steps.

    Like the reference tutorial's ``tf.linspace(0, num_train_steps, 1001)``. ``used`` are a
    run's per-step records (``steps.jsonl``), drawn as the rates training used.
    """
    if num_points < 2:
        raise ConfigError(f"points: need at least 2, got {num_points}")
    schedule = learning_rate_schedule(config)
    total = config.total_steps
    steps = np.linspace(0.0, float(total), num_points)
    rates = np.array([schedule(float(step)) for step in steps])
    warmup = config.resolved_warmup_steps()
    data = ScheduleData(steps, rates, total, warmup, schedule(float(warmup)))
    if used:
        data.used_steps = np.array([r["step"] - 1 for r in used], dtype=float)
        data.used_learning_rates = np.array([r["learning_rate"] for r in used], dtype=float)
    return data


# -- packed inputs ------------------------------------------------------------------------------


@dataclass
class InputsData:
    """A batch of packed inputs: three integer arrays [examples, positions]."""

    input_word_ids: np.ndarray
    input_mask: np.ndarray
    input_type_ids: np.ndarray
    # Where the rows came from, for the title (a file and the row range).
    source: str = ""

    def arrays(self) -> dict[str, np.ndarray]:
        """The three arrays by input name."""
        return {name: getattr(self, name) for name in INPUT_NAMES}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of everything drawn."""
        return _plain({**self.arrays(), "source": self.source})


def inputs_data(packed: dict[str, np.ndarray], source: str = "") -> InputsData:
    """Wrap the packer's output (``TextProcessor(columns)`` or ``BertPacker(...)``)."""
    missing = [name for name in INPUT_NAMES if name not in packed]
    if missing:
        raise ConfigError(f"packed inputs lack {', '.join(missing)}")
    arrays = {name: np.asarray(packed[name]) for name in INPUT_NAMES}
    return InputsData(**arrays, source=source)


# -- training history ---------------------------------------------------------------------------


@dataclass
class HistoryData:
    """A run's records: one per evaluation (``history.jsonl``) and per step (``steps.jsonl``).

    ``metric_keys`` are the evaluation keys drawn as metric curves (``dev_accuracy``, ...).
    """

    evaluations: list[dict] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    metric_keys: list[str] = field(default_factory=list)
    source: str = ""

    def series(self, key: str, records: str = "steps") -> tuple[np.ndarray, np.ndarray]:
        """``(step, value)`` arrays of ``key`` over the per-step or evaluation records."""
        rows = [r for r in getattr(self, records) if r.get(key) is not None]
        return (
            np.array([r["step"] for r in rows], dtype=float),
            np.array([r[key] for r in rows], dtype=float),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of everything drawn."""
        return _plain(self.__dict__)


# Evaluation-record keys that describe the training epoch, not a metric.
_TRAINING_KEYS = ("epoch", "step", "train_loss", "learning_rate", "examples_per_second")


def metric_keys(evaluations: Sequence[dict]) -> list[str]:
    """Evaluation keys holding metrics (``dev_accuracy``, ``dev_matched_accuracy``, ...)."""
    keys: list[str] = []
    for record in evaluations:
        for key, value in record.items():
            skip = key in _TRAINING_KEYS or key.startswith("train_") or key in keys
            if not skip and isinstance(value, (int, float)) and not isinstance(value, bool):
                keys.append(key)
    return keys


def read_history(run_dir: str | Path) -> HistoryData:
    """The records of a run directory; raises :class:`ConfigError` if it has none."""
    run_dir = Path(run_dir)
    history = run_dir / HISTORY_FILE
    if not history.is_file():
        raise ConfigError(f"{run_dir}: no {HISTORY_FILE}; not a run directory (or not started)")
    evaluations = read_jsonl(history)
    steps = read_jsonl(run_dir / STEP_LOG_FILE)
    return HistoryData(evaluations, steps, metric_keys(evaluations), str(run_dir))


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over up to ``window`` values (shorter at the start), same length."""
    values = np.asarray(values, dtype=float)
    if window <= 1 or values.size == 0:
        return values.copy()
    sums = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, values.size + 1), window)
    return (sums[1:] - sums[np.arange(values.size) + 1 - counts]) / counts


# -- confusion matrix ---------------------------------------------------------------------------


@dataclass
class ConfusionData:
    """Counts of (true class, predicted class) on a split: ``matrix[true, predicted]``."""

    matrix: np.ndarray
    label_names: list[str]
    split: str = ""

    @property
    def accuracy(self) -> float:
        """Share of examples on the diagonal."""
        total = self.matrix.sum()
        return float(np.trace(self.matrix) / total) if total else 0.0

    def normalized(self) -> np.ndarray:
        """Each row divided by its total (the share of each true class predicted as each)."""
        totals = self.matrix.sum(axis=1, keepdims=True)
        return np.divide(self.matrix, totals, out=np.zeros(self.matrix.shape), where=totals > 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of everything drawn."""
        return _plain({**self.__dict__, "accuracy": self.accuracy})


def confusion_matrix(predictions: Sequence[int], labels: Sequence[int], num_classes: int):
    """``matrix[true, predicted]`` counts as an int64 array [num_classes, num_classes]."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if predictions.shape != labels.shape:
        raise ValueError(f"{predictions.shape[0]} predictions for {labels.shape[0]} labels")
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels.astype(np.int64), predictions.astype(np.int64)), 1)
    return matrix


def confusion_data(classifier, examples, split: str = "dev", batch_size: int = 64):
    """Run ``classifier`` (a :class:`~bertfit.inference.TextClassifier`) on labelled examples."""
    from bertfit.inference import predict_logits  # torch: the data-only plots run without it

    names = list(classifier.info.label_names)
    if classifier.problem_type == REGRESSION:
        raise ConfigError(
            f"task {classifier.info.task} is a regression; a confusion matrix needs classes"
        )
    if examples.labels is None:
        raise ConfigError(f"{examples.source}: the {split} split has no labels")
    inputs = classifier.encode(examples.columns)
    logits = predict_logits(classifier.model, inputs, batch_size)
    matrix = confusion_matrix(logits.argmax(axis=-1), examples.labels, len(names))
    return ConfusionData(matrix, names, split)
