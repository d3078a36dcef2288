"""Where a study lives, and who may work in an output folder.

Without ``--storage`` the study is a SQLite file in the output folder (``study.db``), used by
one ``bertfit tune`` at a time (:func:`lock_output`). A trial such a study holds as RUNNING
when a tune starts was left by a process that was killed: :func:`fail_abandoned_trials`
marks it FAIL, so it is never counted, and the same command continues the study.

``--storage URL`` (PostgreSQL, or any database SQLAlchemy reaches) shares one study between
processes on one or many machines. A lock cannot tell a dead worker there from a live one on
another machine, so each trial beats a heartbeat; a trial whose heartbeat stops for
:data:`GRACE_SECONDS` is marked FAIL by the next worker that starts a trial, and Optuna's
``RetryHeartbeatStaleTrialCallback`` queues it again with the same parameters.
"""

from __future__ import annotations

import os
import re
import time
import warnings
from pathlib import Path

from bertfit.errors import ConfigError
from bertfit.tune import require_optuna

STUDY_FILE = "study.db"
LOCK_FILE = ".tune.lock"
# A live trial's heartbeat every minute; one silent for three is a dead worker's. Optuna's own
# examples use 60 and 120; the extra minute covers a worker busy saving a large model.
HEARTBEAT_SECONDS = 60
GRACE_SECONDS = 180
# A dead worker's trial is queued again this many times at most (a trial that kills every
# worker that runs it must not go round for ever).
MAX_RETRY = 1
# Seconds a PostgreSQL connection may take before the URL counts as unreachable.
CONNECT_TIMEOUT_SECONDS = 10
# Workers started together on an empty database all create Optuna's tables; all but one lose
# that race with "already exists" and simply open the tables the winner made, on a later try.
SCHEMA_ATTEMPTS = 5


def storage_url(storage: str | None, output: Path) -> str:
    """The SQLAlchemy URL of the study: ``storage`` as given, or ``OUTPUT/study.db``.

    ``postgresql://`` (and ``postgres://``) mean PostgreSQL through psycopg 3 (the tune
    extra installs it), which SQLAlchemy names ``postgresql+psycopg://``.
    """
    if storage is None:
        return f"sqlite:///{(output / STUDY_FILE).resolve()}"
    return re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", storage)


def redact(url: str) -> str:
    """``url`` without its password, for messages and files."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def open_storage(url: str, shared: bool):
    """An Optuna RDB storage at ``url``; with ``shared``, trials beat heartbeats.

    An unreachable database or a URL SQLAlchemy cannot read is :class:`ConfigError` (one
    line, naming the URL without its password).
    """
    optuna = require_optuna()
    options: dict = {}
    if url.startswith("postgresql"):
        options["engine_kwargs"] = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_SECONDS}}
    if shared:
        with warnings.catch_warnings():  # the retry callback is marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
        options.update(
            heartbeat_interval=HEARTBEAT_SECONDS,
            grace_period=GRACE_SECONDS,
            heartbeat_stale_trial_callback=retry,
        )
    for attempt in range(1, SCHEMA_ATTEMPTS + 1):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, **options)
        except Exception as error:  # SQLAlchemy's and the drivers' errors: "cannot use it"
            reason = " ".join(str(getattr(error, "orig", None) or error).split())
            if "already exists" in reason and attempt < SCHEMA_ATTEMPTS:
                time.sleep(0.2 * attempt)  # another worker is creating the tables
                continue
            if len(reason) > 200:
                reason = reason[:200] + "..."
            raise ConfigError(f"storage {redact(url)}: cannot open it ({reason})") from None


class OutputLock:
    """An exclusive lock on an output folder, held while a tune works in it.

    The lock is ``fcntl.flock`` on ``OUTPUT/.tune.lock``: the system drops it when the holder
    dies, however it dies, so a killed tune never blocks the next.
    """

    def __init__(self, output: Path) -> None:
        self.path = output / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`ConfigError` if another process holds it."""
        try:  # POSIX only; elsewhere the folder is not guarded
            import fcntl
        except ImportError:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ConfigError(
                f"{self.path.parent} is in use by another bertfit tune; give each process its "
                "own --output (processes share a study through --storage)"
            ) from None
        self._fd = fd

    def release(self) -> None:
        """Let the folder go (closing the file drops the lock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def fail_abandoned_trials(study) -> list[int]:
    """Mark FAIL every RUNNING trial of a study only this process may work on (its own
    SQLite file, under its lock): each was left by a killed tune. Returns their numbers."""
    optuna = require_optuna()
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for trial in running:
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    return [trial.number for trial in running]
