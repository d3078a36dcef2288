"""Progress bars for long steps, and the one switch that silences them.

Every long step (tokenizing a large file, training, evaluating, downloading, exporting) draws its
bar through :func:`bar`, so one policy decides for all of them: bars show when stderr is a
terminal (or in a Jupyter kernel) and stay off under ``--quiet`` (:func:`set_quiet`) or when
output is piped to a file, where a bar would only fill the log with carriage returns. What is
left then is one line per epoch, printed by the trainer.

This module does not import torch.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

_quiet = False
# Least seconds between two redraws of a bar (tqdm's mininterval); tests set 0 to see each.
REFRESH_SECONDS = 0.1


def set_quiet(quiet: bool) -> None:
    """Turn every progress bar of this process off (``True``) or back to the default."""
    global _quiet
    _quiet = bool(quiet)


def is_quiet() -> bool:
    """Whether :func:`set_quiet` turned progress bars off."""
    return _quiet


def _interactive() -> bool:
    stream = sys.stderr
    if stream is not None and hasattr(stream, "isatty") and stream.isatty():
        return True
    # A notebook's stderr is no terminal, yet it draws tqdm's widgets well.
    return "ipykernel" in sys.modules


def enabled(requested: bool | None = None) -> bool:
    """Whether to draw a bar: ``requested`` if given, else not quiet and interactive."""
    if requested is not None:
        return bool(requested)
    return not _quiet and _interactive()


def bar(
    iterable: Iterable | None = None,
    *,
    desc: str,
    total: float | None = None,
    unit: str = "it",
    show: bool | None = None,
    delay: float = 0.5,
    **options: Any,
):
    """A tqdm bar on stderr, disabled unless :func:`enabled` (``show`` overrides the policy).

    ``delay`` hides bars of steps that end within that many seconds, so quick steps print
    nothing. The bar is removed when done (``leave=False``) unless ``options`` say otherwise.
    """
    from tqdm.auto import tqdm  # tqdm.auto probes for notebooks; only bars pay for it

    options.setdefault("leave", False)
    options.setdefault("mininterval", REFRESH_SECONDS)
    options.setdefault("dynamic_ncols", True)
    return tqdm(
        iterable,
        desc=desc,
        total=total,
        unit=unit,
        disable=not enabled(show),
        delay=delay,
        file=sys.stderr,
        **options,
    )
