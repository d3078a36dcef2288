"""Exceptions for mistakes a user can make (bad file, bad row, bad config, wrong checkpoint).

The CLI prints any :class:`BertfitError` as one line and exits non-zero; anything else is a bug
and keeps its traceback.
"""


class BertfitError(Exception):
    """Base class of every error caused by user input rather than by a bug in bertfit."""


class ConfigError(BertfitError):
    """A configuration value or key is missing, unknown or out of range."""


class DataError(BertfitError):
    """A data file is missing or malformed; the message names the file and line."""


class CheckpointError(BertfitError):
    """A model directory or weight file is unreadable or does not fit the model."""
