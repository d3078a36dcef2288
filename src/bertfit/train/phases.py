"""Where a run's seconds go: the wall time of each phase, kept in ``RUN/timings.json``.

A training job is more than its loop: start-up and imports, reading and tokenizing the data,
building and restoring the model, the first (warm-up) step, the other steps, the heap trims
between them (:mod:`bertfit.train.memory`), each evaluation, each checkpoint, each save of the
best model, the temperature fit. :class:`PhaseTimer` records them as they happen, so a slow
job says where its time went without a profiler. Each record also holds the process's peak
resident memory when the phase ended, so the phase that raised the peak shows too. Needs
neither torch nor numpy.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

TIMINGS_FILE = "timings.json"

#: The order phases are reported in; others follow in the order they first ran.
PHASES = (
    "start-up",
    "reading data",
    "building model",
    "tokenizing",
    "first step",
    "training steps",
    "releasing memory",
    "evaluation",
    "checkpoint",
    "saving model",
    "calibration",
)


def process_age() -> float | None:
    """Seconds since this process started (the interpreter, imports and all); None where the
    operating system does not say (only Linux's ``/proc`` is read)."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            # Field 22, after the command name in parentheses (which may hold spaces).
            start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime", encoding="ascii") as uptime:
            up = float(uptime.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, up - start_ticks / os.sysconf("SC_CLK_TCK"))


def peak_rss_mib() -> float:
    """The most resident memory this process has held so far, in MiB."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return round(kib / 1024, 1)


@dataclass
class PhaseTimer:
    """Wall seconds per phase, in the order they ran (a phase may run several times)."""

    records: list[dict] = field(default_factory=list)

    @contextlib.contextmanager
    def phase(self, name: str, **detail) -> Iterator[None]:
        """Time the block as one run of ``name``; ``detail`` (e.g. ``step=120``) is kept."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - started, **detail)

    def add(self, name: str, seconds: float, **detail) -> None:
        """Record ``seconds`` spent in ``name``, and the peak memory so far."""
        record = {"phase": name, "seconds": seconds, **detail}
        record["peak_rss_mib"] = peak_rss_mib()
        self.records.append(record)

    def totals(self) -> dict[str, dict[str, float]]:
        """Each phase's total seconds and how many times it ran, in :data:`PHASES` order."""
        totals: dict[str, dict[str, float]] = {}
        for record in self.records:
            entry = totals.setdefault(record["phase"], {"seconds": 0.0, "count": 0})
            entry["seconds"] += record["seconds"]
            entry["count"] += 1
        known = [name for name in PHASES if name in totals]
        return {name: totals[name] for name in known + [n for n in totals if n not in known]}

    def to_dict(self, total_seconds: float | None = None) -> dict:
        """What ``RUN/timings.json`` holds: totals, every record, and the whole job's seconds."""
        return {"total_seconds": total_seconds, "phases": self.totals(), "records": self.records}

    def summary(self) -> str:
        """One line for the log: ``start-up 2.1 s, ..., evaluation 3.4 s (2x), ...``."""
        parts = []
        for name, entry in self.totals().items():
            count = f" ({entry['count']}x)" if entry["count"] > 1 else ""
            parts.append(f"{name} {entry['seconds']:.1f} s{count}")
        return ", ".join(parts)
