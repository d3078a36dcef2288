"""The resolved configuration of a training run, written to ``RUN/config.json``.

It holds everything needed to repeat the run: the task, the pretrained model, the data,
the trainer's settings and the whole optimizer (an :class:`OptimizationConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bertfit.config import dataclass_from_dict, dataclass_to_dict, read_json
from bertfit.errors import ConfigError
from bertfit.train.optim import OptimizationConfig

DEFAULT_LEARNING_RATE = 5e-5


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

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid setting."""
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"trainer.{name} must be positive, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps <= 0:
            raise ConfigError(f"trainer.max_steps must be positive, got {self.max_steps}")


@dataclass
class RunConfig:
    """Everything a training run depends on."""

    task: str = "mrpc"
    # A model directory or preset name; None means the packaged all-MiniLM-L6-v2.
    model: str | None = None
    data_dir: str | None = None
    max_seq_length: int = 128
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optimizer: OptimizationConfig = field(
        default_factory=lambda: OptimizationConfig(learning_rate=DEFAULT_LEARNING_RATE)
    )

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid setting."""
        if self.max_seq_length < 3 or self.max_seq_length > 512:
            raise ConfigError(f"max_seq_length must be in 3..512, got {self.max_seq_length}")
        self.trainer.validate()
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
