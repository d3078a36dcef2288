"""Ctrl-C and SIGTERM during training: finish the step, save a checkpoint, then stop."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator


class StopSignals:
    """While :meth:`catching`, SIGINT and SIGTERM ask for a stop after the current step.

    The trainer reads :attr:`signum` at each step (processes agree on it, so a signal reaching
    one process of a job stops all of them at the same step). A second signal stops at once
    (KeyboardInterrupt). ``announce`` prints what will happen (process 0 only).
    """

    def __init__(self, announce: bool = True) -> None:
        self.announce = announce
        self.signum: int | None = None  # the signal that asked to stop, if one did

    @contextlib.contextmanager
    def catching(self, enabled: bool = True) -> Iterator[None]:
        """Catch the signals inside the block (when ``enabled`` and on the main thread, where
        Python delivers them); elsewhere they keep their usual meaning."""
        self.signum = None
        if not (enabled and threading.current_thread() is threading.main_thread()):
            yield
            return
        signals = (signal.SIGINT, signal.SIGTERM)
        previous = {signum: signal.signal(signum, self._request_stop) for signum in signals}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _request_stop(self, signum, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        if self.announce:
            print(
                "bertfit: stopping after this step to save a checkpoint "
                "(Ctrl-C again stops at once)",
                file=sys.stderr,
            )
