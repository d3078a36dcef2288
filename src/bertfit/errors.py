"""Exceptions for mistakes a user can make (bad file, bad row, bad config, wrong checkpoint),
and for training stopped by a signal.

The CLI prints any :class:`BertfitError` as one line and exits non-zero, and a
:class:`TrainingInterrupted` as where training stopped and how to continue; anything else is a
bug and keeps its traceback. This module imports nothing, so the CLI catches both without
loading torch.
"""

from __future__ import annotations

from pathlib import Path


class BertfitError(Exception):
    """Base class of every error caused by user input rather than by a bug in bertfit."""


class ConfigError(BertfitError):
    """A configuration value or key is missing, unknown or out of range."""


class DataError(BertfitError):
    """A data file is missing or malformed; the message names the file and line."""


class CheckpointError(BertfitError):
    """A model directory or weight file is unreadable or does not fit the model."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped training after a whole step, saved in ``checkpoint``."""

    def __init__(self, signum: int, step: int, checkpoint: Path | None) -> None:
        super().__init__(f"stopped by signal {signum} after step {step}")
        self.signum = signum
        self.step = step
        self.checkpoint = checkpoint
