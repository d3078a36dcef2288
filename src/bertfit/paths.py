"""The names of bertfit's own files, where it keeps them, and the digest that checks them.

Torch-free, so the commands that only read files (``inspect``, ``plot``) use it too.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from bertfit.errors import ConfigError

#: A fine-tuned classifier's own settings (task, labels, length, lower-casing, truncator),
#: beside Hugging Face's files in its directory.
BERTFIT_FILE = "bertfit.json"
#: Where a run directory keeps its best model.
RUN_MODEL_DIR = "model"
#: A saved model's Hugging Face model card (see bertfit.model_card), in its directory.
MODEL_CARD_FILE = "README.md"
#: A run's temperature fit (see bertfit.train.calibrate), beside its model directory.
CALIBRATION_FILE = "calibration.json"


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (so a large weights file is never held whole)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def cache_root() -> Path:
    """bertfit's user cache directory, ``$XDG_CACHE_HOME/bertfit`` (``~/.cache/bertfit``).

    Downloaded models go in its ``models/``, downloaded GLUE tasks in its ``glue/``.
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "bertfit"


def find_model_dir(path: str | Path) -> Path:
    """The saved model directory of a run directory (``RUN/model``), or ``path`` itself."""
    path = Path(path).expanduser()
    for candidate in (path / RUN_MODEL_DIR, path):
        if (candidate / BERTFIT_FILE).is_file():
            return candidate
    raise ConfigError(f"{path}: not a bertfit run (no model/{BERTFIT_FILE}) or model directory")
