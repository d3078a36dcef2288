"""Where a run's time goes: the phase timer and the ``timings.json`` a run writes."""

from __future__ import annotations

import json
import time

import pytest

from bertfit.cli import main
from bertfit.train import memory
from bertfit.train.phases import PHASES, PhaseTimer, process_age

from conftest import write_glue_task


def test_phases_add_up_per_name_in_the_reported_order():
    timer = PhaseTimer()
    timer.add("evaluation", 1.5, step=10)
    timer.add("start-up", 2.0)
    timer.add("evaluation", 0.5, step=20)
    timer.add("something else", 0.25)
    totals = timer.totals()
    assert list(totals) == ["start-up", "evaluation", "something else"]
    assert totals["evaluation"] == {"seconds": 2.0, "count": 2}
    assert timer.summary() == "start-up 2.0 s, evaluation 2.0 s (2x), something else 0.2 s"
    saved = timer.to_dict(total_seconds=5.0)
    assert saved["total_seconds"] == 5.0
    first = saved["records"][0]
    assert {k: first[k] for k in ("phase", "seconds", "step")} == {
        "phase": "evaluation", "seconds": 1.5, "step": 10,
    }  # fmt: skip
    assert first["peak_rss_mib"] > 0


def test_a_timed_block_is_recorded_even_when_it_fails():
    timer = PhaseTimer()
    with pytest.raises(RuntimeError), timer.phase("checkpoint", step=3):
        time.sleep(0.01)
        raise RuntimeError("disk full")
    [record] = timer.records
    assert record["phase"] == "checkpoint" and record["step"] == 3
    assert record["seconds"] >= 0.01


def test_process_age_counts_from_the_interpreters_start():
    age = process_age()
    assert age is not None  # the tests run on Linux, where /proc says
    assert 0.0 < age < 24 * 3600
    time.sleep(0.05)
    assert process_age() >= age


def test_a_run_writes_where_its_time_went(tmp_path, capsys, tiny_model_dir):
    root = write_glue_task(tmp_path / "glue", "mrpc", n_train=48, n_dev=16)
    run = tmp_path / "run"
    args = ["train", "--task", "mrpc", "--output", str(run), "--data-dir", str(root)]
    args += ["--model", str(tiny_model_dir), "--max-seq-length", "32", "--epochs", "2"]
    args += ["--batch-size", "16", "--quiet", "trainer.release_memory_every_steps=5"]
    assert main(args) == 0
    timings = json.loads((run / "timings.json").read_text())
    phases = timings["phases"]
    # Each phase of a two-epoch run, in order; an evaluation and a checkpoint per epoch.
    assert list(phases) == [name for name in PHASES if name in phases]
    assert set(phases) >= {
        "start-up", "reading data", "building model", "tokenizing", "first step",
        "training steps", "evaluation", "checkpoint", "saving model", "calibration",
    }  # fmt: skip
    assert phases["evaluation"]["count"] == 2 and phases["checkpoint"]["count"] == 2
    steps = [r for r in timings["records"] if r["phase"] == "training steps"]
    assert steps[0]["steps"] == 2 * 3 - 1  # 48 examples in batches of 16, the first apart
    assert [r["step"] for r in timings["records"] if r["phase"] == "checkpoint"] == [3, 6]
    # Heap trims are their own phase: after step 5 (every 5 steps) and after each evaluation
    # (where glibc can trim at all).
    trims = [r["trims"] for r in timings["records"] if r["phase"] == "releasing memory"]
    assert trims == ([3] if memory.release_free_heap() else [])
    assert all(r["seconds"] >= 0 for r in timings["records"])
    # The peak only grows, and each record says how high it was when its phase ended.
    peaks = [r["peak_rss_mib"] for r in timings["records"]]
    assert peaks == sorted(peaks) and peaks[0] > 0
    # The whole job took at least what its phases add up to.
    assert timings["total_seconds"] >= sum(p["seconds"] for p in phases.values()) - 0.05
    assert "time: start-up" in capsys.readouterr().out
