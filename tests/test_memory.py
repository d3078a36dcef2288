"""Handing freed heap back to the system between training steps (bertfit.train.memory)."""

from __future__ import annotations

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
