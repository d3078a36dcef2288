"""Keep a training process's memory near what its tensors need.

Packed batches give nearly every step new tensor shapes. oneDNN, which runs PyTorch's CPU
matrix products, caches a compiled primitive for every new shape (up to 1,024 in its own cache
and 1,024 more in PyTorch's ``ideep`` layer), with buffers of their own, so the caches only
grow, and what they keep between the activations pins glibc's heap: freed activations leave
holes that later, differently sized requests rarely fit. An MRPC run's resident memory climbed
by about 300 MiB a step between heap trims and peaked at 2.6 GiB over five epochs.
:func:`limit_kernel_caches` bounds oneDNN's cache to :data:`ONEDNN_CACHE_ENTRIES` entries and
turns ``ideep``'s off. A bounded cache still matters: within one step every layer multiplies
the same shapes, and on CPUs with AMX each new primitive is compiled at a cost (measured on a
Xeon with AMX: 60 steps in 47-50 s with no cache against 29-34 s with 32 entries or 1,024,
at a peak of 1.2 GB with 32 entries against 2.7 GB with 1,024). The memory held between steps
then stays near 600-700 MiB.

:class:`HeapTrimmer` can still hand the heap's whole free pages back to the system
(``malloc_trim``) every few steps and after each evaluation
(``trainer.release_memory_every_steps``); with the caches bounded it is off by default, since it
saved little and each trim's pages are faulted in again. On systems without glibc's
``malloc_trim`` (macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import time
from collections.abc import Callable

#: oneDNN's primitive cache and PyTorch's ideep cache (its LRU of oneDNN objects), and the
#: capacities training sets them to. A capacity set in the environment already is kept.
ONEDNN_CACHE_ENTRIES = 32  # a step's own shapes, reused layer after layer; not every step's
KERNEL_CACHE_LIMITS = {
    "ONEDNN_PRIMITIVE_CACHE_CAPACITY": str(ONEDNN_CACHE_ENTRIES),
    "LRU_CACHE_CAPACITY": "1",
}


def limit_kernel_caches() -> None:
    """Keep oneDNN from caching a primitive for every input shape this process ever sees:
    its cache keeps the last :data:`ONEDNN_CACHE_ENTRIES`, ``ideep``'s is off.

    Both libraries read their capacity once, at their first matrix product, so this must run
    before the process's first one; afterwards it changes nothing (and costs nothing).
    """
    for name, value in KERNEL_CACHE_LIMITS.items():
        os.environ.setdefault(name, value)


def _find_malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_MALLOC_TRIM = _find_malloc_trim()


def release_free_heap() -> bool:
    """Return the heap's free pages to the system; False where that is not available."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


class HeapTrimmer:
    """Calls :func:`release_free_heap` after every ``every_steps``-th step (None: never).

    ``seconds`` adds up the wall time the trims took, for the run's phase timings.
    """

    def __init__(self, every_steps: int | None) -> None:
        self.every_steps = every_steps if _MALLOC_TRIM is not None else None
        self.seconds = 0.0
        self.count = 0

    def after_step(self, step: int) -> None:
        """Trim when ``step`` is a multiple of ``every_steps``."""
        if self.every_steps and step % self.every_steps == 0:
            self._trim()

    def release(self) -> None:
        """Trim now (after an evaluation, say), unless trimming is off."""
        if self.every_steps:
            self._trim()

    def _trim(self) -> None:
        started = time.perf_counter()
        release_free_heap()
        self.seconds += time.perf_counter() - started
        self.count += 1
