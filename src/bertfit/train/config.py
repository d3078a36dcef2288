"""The resolved configuration of a training run, written to ``RUN/config.json``.

It holds everything needed to repeat the run: the task, the pretrained model, the data,
the trainer's settings and the whole optimizer (an :class:`OptimizationConfig`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from bertfit.config import dataclass_from_dict, dataclass_to_dict, read_json
from bertfit.data.tasks import TaskSpec
from bertfit.data.user_files import DEFAULT_LABEL_SEPARATOR, Columns
from bertfit.errors import ConfigError
from bertfit.precision import PRECISIONS
from bertfit.problem import TaskType
from bertfit.text.packing import DEFAULT_TRUNCATOR, Truncator, check_truncator
from bertfit.train.class_weights import check_class_weights
from bertfit.train.optim import OptimizationConfig

DEFAULT_LEARNING_RATE = 5e-5
# Layers of a student when ``bertfit distill`` is not told (``DistillConfig.layers`` holds the
# teacher's indices it chose, so the count has no field of its own).
DEFAULT_STUDENT_LAYERS = 3


@dataclass
class TrainerConfig:
    """How the training loop runs."""

    epochs: int = 3
    batch_size: int = 32
    eval_batch_size: int = 64
    max_steps: int | None = None
    seed: int = 42
    # Batches of similar-length examples (random between epochs); see bertfit.data.batching.
    group_by_length: bool = True
    # Pad every batch to max_seq_length, as the reference tutorial does (slow; for comparisons).
    pad_to_max_length: bool = False
    # Also evaluate (and keep the best model) every this many steps, not only after each epoch;
    # an evaluation record's train_loss then covers the steps since the one before.
    eval_every_steps: int | None = None
    # The dev metric that picks the best model and that early stopping watches: one of the
    # task's metric names (higher is better). None: the task's first (GLUE's own; micro_f1
    # for multi-label). A run's config.json records the name it resolved to.
    main_metric: str | None = None
    # Stop after this many evaluations in a row in which the main metric did not beat the best
    # before it by more than early_stopping_delta (bertfit.train.callbacks.EarlyStopping); the
    # best model is kept. None trains to the end. Needs a dev set.
    early_stopping_patience: int | None = None
    early_stopping_delta: float = 0.0
    # Feed the model only real tokens (see bertfit.model.padding_free); False pads every batch.
    padding_free: bool = True
    # auto | fp32 | bf16 | fp16 (see bertfit.precision); a run's config.json records the
    # precision it resolved to.
    precision: str = "auto"
    # auto | cpu | cuda | cuda:N; auto takes a CUDA device when one is visible.
    device: str = "auto"
    # -- scale-out and fault tolerance (see bertfit.train.distributed and .checkpoint) --
    # Give the heap's free pages back to the system every this many steps and after each
    # evaluation (glibc only; see bertfit.train.memory); None never does. Off by default: with
    # oneDNN's per-shape caches off, the heap no longer climbs between steps.
    release_memory_every_steps: int | None = None
    # Micro-batches of batch_size per process summed into one update; under torchrun the
    # update covers batch_size * grad_accum_steps * world_size examples.
    grad_accum_steps: int = 1
    # Write RUN/checkpoints/step-N/ at the end of every epoch and, if set, every this many steps.
    save_checkpoints: bool = True
    checkpoint_every_steps: int | None = None
    keep_checkpoints: int = 2
    # Under torchrun: "ddp" (a whole model per process) or "fsdp" (parameters, gradients and
    # optimizer state sharded between processes, for encoders that do not fit one device).
    parallel: Literal["ddp", "fsdp"] = "ddp"
    # Weights of the labels in the loss (bertfit.train.class_weights): None, "balanced"
    # (inverse frequency in the training set), or {label name: weight} (others weigh 1).
    # Multi-label: each label's positive weight.
    class_weights: Literal["balanced"] | dict[str, float] | None = None

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid setting."""
        check_class_weights(self.class_weights)
        names = ("epochs", "batch_size", "eval_batch_size", "grad_accum_steps", "keep_checkpoints")
        for name in names:
            if getattr(self, name) <= 0:
                raise ConfigError(f"trainer.{name} must be positive, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps <= 0:
            raise ConfigError(f"trainer.max_steps must be positive, got {self.max_steps}")
        if self.eval_every_steps is not None and self.eval_every_steps <= 0:
            raise ConfigError(
                f"trainer.eval_every_steps must be positive, got {self.eval_every_steps}"
            )
        patience = self.early_stopping_patience
        if patience is not None and patience <= 0:
            raise ConfigError(f"trainer.early_stopping_patience must be positive, got {patience}")
        delta = self.early_stopping_delta
        if not 0 <= delta < math.inf:
            raise ConfigError(f"trainer.early_stopping_delta must be 0 or more, got {delta}")
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"trainer.precision: expected one of {', '.join(PRECISIONS)}, got {self.precision}"
            )
        every = self.release_memory_every_steps
        if every is not None and every <= 0:
            raise ConfigError(f"trainer.release_memory_every_steps must be positive, got {every}")
        if self.checkpoint_every_steps is not None and self.checkpoint_every_steps <= 0:
            raise ConfigError(
                "trainer.checkpoint_every_steps must be positive, "
                f"got {self.checkpoint_every_steps}"
            )

    def main_metric_of(self, task: TaskSpec) -> str:
        """The metric that picks ``task``'s best model: ``main_metric`` when set (it must be
        one of the task's metrics; :class:`ConfigError` names them otherwise), else the task's."""
        if self.main_metric is None:
            return task.main_metric
        if self.main_metric not in task.metrics:
            raise ConfigError(
                f"trainer.main_metric: {task.name} has no metric {self.main_metric!r}; "
                f"choose one of {', '.join(task.metrics)}"
            )
        return self.main_metric

    def global_batch_size(self, world_size: int = 1) -> int:
        """Examples per optimizer update: per-process batch x accumulation x processes."""
        return self.batch_size * self.grad_accum_steps * world_size

    def planned_steps(self, num_examples: int, world_size: int = 1) -> int:
        """Optimizer steps of a run on ``num_examples`` (the schedule's decay horizon)."""
        total = math.ceil(num_examples / self.global_batch_size(world_size)) * self.epochs
        return min(total, self.max_steps) if self.max_steps else total


@dataclass
class UserDataConfig:
    """The user's own files (CSV, TSV, JSON lines or Parquet) instead of a GLUE task.

    Used when ``train_file`` is set; the run's task is then ``custom``. ``task_type`` "auto"
    infers classification or regression from the training labels, and the resolved run config
    records what was chosen, and the label names, so the run repeats exactly. (The other
    values are :data:`bertfit.problem.TaskType`'s, the user's words for a problem type.)
    """

    train_file: str | None = None
    dev_file: str | None = None
    text_a: str = "sentence1"
    text_b: str | None = None
    label: str = "label"
    task_type: Literal["auto", TaskType] = "auto"
    label_names: list[str] | None = None
    # Multi-label data: label names in one CSV/TSV field are separated by this (JSON lines
    # hold an array), or label_columns names one 0/1 column per label instead of `label`.
    label_separator: str = DEFAULT_LABEL_SEPARATOR
    label_columns: list[str] | None = None

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid setting."""
        if self.train_file is None and self.dev_file is not None:
            raise ConfigError("data.dev_file is set but data.train_file is not")
        if self.label_names is not None:
            fewest = 1 if self.task_type == "multi_label" else 2
            if len(set(self.label_names)) < fewest or len(set(self.label_names)) != len(
                self.label_names
            ):
                raise ConfigError(
                    f"data.label_names needs {fewest} or more distinct names, "
                    f"got {self.label_names}"
                )
        if not self.label_separator.strip():
            raise ConfigError("data.label_separator must be a visible character or string")
        if self.label_columns is not None:
            if not self.label_columns or len(set(self.label_columns)) != len(self.label_columns):
                raise ConfigError(
                    f"data.label_columns needs distinct column names, got {self.label_columns}"
                )
            if self.label_names is not None and self.label_names != self.label_columns:
                raise ConfigError(
                    "data.label_names: with data.label_columns the labels are the columns"
                )

    def columns(self) -> Columns:
        """Where the texts and labels are in the files."""
        return Columns(
            self.text_a,
            self.text_b,
            self.label,
            tuple(self.label_columns or ()),
            self.label_separator,
        )


@dataclass
class LoggingConfig:
    """What a run records besides ``history.jsonl``; none of it changes the model.

    Per-step scalars (loss, learning rate, examples/s, gradient norm) always go to
    ``RUN/steps.jsonl``; ``tensorboard`` also writes them, and the dev metrics, as TensorBoard
    event files under ``RUN/tensorboard/``.
    """

    tensorboard: bool = False
    # Write one per-step record every this many steps (averaged over them).
    log_every_steps: int = 1

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid setting."""
        if self.log_every_steps <= 0:
            raise ConfigError(
                f"logging.log_every_steps must be positive, got {self.log_every_steps}"
            )


@dataclass
class DistillConfig:
    """Distillation from a fine-tuned teacher run (``bertfit distill``); off without ``teacher``.

    The student is the teacher's classifier with only the teacher's layers ``layers`` (see
    :mod:`bertfit.model.student`; ``init`` says how they were chosen) and trains on
    ``alpha`` x the task's loss on the gold labels + (1 - ``alpha``) x the loss against the
    teacher's outputs at ``temperature`` (see :mod:`bertfit.train.distillation`).
    """

    # The teacher's run directory (absolute, as a run records it).
    teacher: str | None = None
    # The teacher's layer indices the student's layers start from, in order.
    layers: list[int] | None = None
    # How ``layers`` was chosen: spread | first | last (bertfit.model.student), or custom.
    init: str = "spread"
    temperature: float = 2.0
    alpha: float = 0.5
    # Augmented copies of each training input, learnt from the teacher's outputs alone
    # (bertfit.train.augment); 0 trains on the task's own inputs only.
    augment: int = 0
    # The share of one-piece words each copy replaces by a near neighbour.
    augment_rate: float = 0.3
    # Weight of matching each student layer's first-token vector to its teacher layer's
    # (bertfit.train.losses.layer_match_loss); 0 matches the outputs only.
    layer_weight: float = 0.0
    # Weight of matching every token's vector in each student layer to its teacher layer's,
    # with the teacher run on each training batch (bertfit.train.losses.token_match_loss,
    # TinyBERT's hidden-state loss); 0 does not run the teacher during training.
    token_weight: float = 0.0

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid setting."""
        if self.teacher is None:
            return
        if not self.layers:
            raise ConfigError("distill.layers: name the teacher layers the student starts from")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ConfigError(f"distill.temperature must be positive, got {self.temperature}")
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"distill.alpha must be in [0, 1], got {self.alpha}")
        if self.augment < 0:
            raise ConfigError(f"distill.augment must be 0 or more copies, got {self.augment}")
        if self.augment and self.alpha == 1:
            raise ConfigError(
                "distill.augment needs distill.alpha below 1: augmented copies have no gold "
                "label and learn from the teacher's outputs alone"
            )
        if not 0 < self.augment_rate <= 1:
            raise ConfigError(f"distill.augment_rate must be in (0, 1], got {self.augment_rate}")
        for name in ("layer_weight", "token_weight"):
            weight = getattr(self, name)
            if not (weight >= 0 and math.isfinite(weight)):
                raise ConfigError(f"distill.{name} must be 0 or more, got {weight}")
            if weight and self.alpha == 1:
                raise ConfigError(
                    f"distill.{name} needs distill.alpha below 1: at alpha 1 the run trains "
                    "on the gold labels alone and never consults the teacher"
                )


@dataclass
class RunConfig:
    """Everything a training run depends on."""

    task: str = "mrpc"
    # A model directory or preset name; None means the packaged all-MiniLM-L6-v2.
    model: str | None = None
    # Re-initialize the top this many encoder layers, and the pooler, after the pretrained
    # weights are loaded (BERT's init, the model's initializer_range, the run's seed); 0 keeps
    # them all. Top-level beside ``model`` because ``model`` is the model's path, not a section.
    reinit_layers: int = 0
    data_dir: str | None = None
    max_seq_length: int = 128
    # Longer texts: None truncates them; a number trains and predicts on overlapping windows
    # this many tokens apart (each window carries the text's label; logits are averaged).
    window_stride: int | None = None
    # How pairs longer than max_seq_length are cut, as BertPackInputs(truncator=...):
    # "round_robin" shares the room token by token, "waterfall" keeps the first text whole.
    # The saved model and its export pack the same way.
    truncator: Truncator = DEFAULT_TRUNCATOR
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optimizer: OptimizationConfig = field(
        default_factory=lambda: OptimizationConfig(learning_rate=DEFAULT_LEARNING_RATE)
    )
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    data: UserDataConfig = field(default_factory=UserDataConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid setting."""
        if self.max_seq_length < 3 or self.max_seq_length > 512:
            raise ConfigError(f"max_seq_length must be in 3..512, got {self.max_seq_length}")
        if self.window_stride is not None and not 0 < self.window_stride < self.max_seq_length:
            raise ConfigError(
                f"window_stride must be in 1..{self.max_seq_length - 1}, got {self.window_stride}"
            )
        check_truncator(self.truncator)
        if isinstance(self.reinit_layers, bool) or self.reinit_layers < 0:
            raise ConfigError(f"reinit_layers must be 0 or more, got {self.reinit_layers}")
        if self.reinit_layers and self.distill.teacher is not None:
            raise ConfigError(
                "reinit_layers: a distilled student starts from its teacher's fine-tuned "
                "layers; re-initializing them is not supported (leave it at 0)"
            )
        self.trainer.validate()
        self.logging.validate()
        self.data.validate()
        self.distill.validate()
        if self.trainer.early_stopping_patience is not None and (
            self.data.train_file is not None and self.data.dev_file is None
        ):
            raise ConfigError(
                "trainer.early_stopping_patience needs a dev set to watch (--dev or data.dev_file)"
            )
        if self.optimizer.learning_rate <= 0:
            raise ConfigError(
                f"optimizer.learning_rate must be positive, got {self.optimizer.learning_rate}"
            )

    def to_dict(self) -> dict:
        """Plain JSON-ready dict."""
        data = dataclass_to_dict(self)
        data["optimizer"] = self.optimizer.as_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict, where: str = "config") -> RunConfig:
        """Strictly rebuild a config written by :meth:`to_dict`."""
        data = dict(data)
        optimizer = data.pop("optimizer", None)
        config = dataclass_from_dict(cls, data, where)
        if optimizer is not None:
            config.optimizer = OptimizationConfig.from_dict(optimizer, where=f"{where}.optimizer")
        return config

    @classmethod
    def from_json_file(cls, path) -> RunConfig:
        """Read a run's ``config.json``."""
        return cls.from_dict(read_json(path), where=str(path))
