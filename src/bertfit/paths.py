"""Where bertfit keeps files of its own: one user cache for models and data alike."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """bertfit's user cache directory, ``$XDG_CACHE_HOME/bertfit`` (``~/.cache/bertfit``).

    Downloaded models go in its ``models/``, downloaded GLUE tasks in its ``glue/``.
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "bertfit"
