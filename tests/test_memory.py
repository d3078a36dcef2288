"""Handing freed heap back to the system between training steps (bertfit.train.memory)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bertfit.errors import ConfigError
from bertfit.train import memory
from bertfit.train.config import TrainerConfig


def test_trimmer_trims_every_n_steps_and_on_request(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "_MALLOC_TRIM", lambda pad: calls.append(pad) or 1)
    trimmer = memory.HeapTrimmer(every_steps=3)
    for step in range(1, 10):
        trimmer.after_step(step)
    assert calls == [0, 0, 0]  # steps 3, 6 and 9
    trimmer.release()
    assert len(calls) == 4


def test_trimmer_is_off_when_asked_or_without_malloc_trim(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "_MALLOC_TRIM", lambda pad: calls.append(pad) or 1)
    off = memory.HeapTrimmer(every_steps=None)
    off.after_step(10)
    off.release()
    monkeypatch.setattr(memory, "_MALLOC_TRIM", None)
    missing = memory.HeapTrimmer(every_steps=1)
    missing.after_step(1)
    missing.release()
    assert calls == [] and memory.release_free_heap() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_malloc_trim_is_found_on_linux():
    assert memory.release_free_heap() is True


def test_the_interval_must_be_positive():
    with pytest.raises(ConfigError, match="release_memory_every_steps"):
        TrainerConfig(release_memory_every_steps=0).validate()


KERNEL_CACHE_PROBE = """
import ctypes, sys
if sys.argv[1] == "limited":
    from bertfit.train.memory import limit_kernel_caches
    limit_kernel_caches()
import torch
torch.set_num_threads(1)
trim = ctypes.CDLL("libc.so.6").malloc_trim
def rss_mib():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
weight = torch.randn(384, 384, requires_grad=True)
for rows in range(16, 16 + 240):  # a new shape every time, as packed batches give
    x = torch.randn(rows, 384, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.nn.functional.linear(x, weight).sum().backward()
    if rows == 20:
        trim(0)
        start = rss_mib()
trim(0)
print(rss_mib() - start)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and glibc")
def test_training_keeps_onednn_from_caching_a_primitive_per_shape():
    env = {k: v for k, v in os.environ.items() if k not in memory.KERNEL_CACHE_LIMITS}
    grown = {}
    for mode in ("limited", "default"):
        command = [sys.executable, "-c", KERNEL_CACHE_PROBE, mode]
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        grown[mode] = float(result.stdout)
    # With its caches, oneDNN keeps hundreds of MiB for 240 shapes; bounded, a few at most.
    assert grown["limited"] < 32, grown
    assert grown["default"] > 4 * max(grown["limited"], 8), grown


def test_kernel_cache_limits_keep_what_the_environment_already_says(monkeypatch):
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")
    monkeypatch.delenv("LRU_CACHE_CAPACITY", raising=False)
    memory.limit_kernel_caches()
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "64"
    assert os.environ["LRU_CACHE_CAPACITY"] == "1"
