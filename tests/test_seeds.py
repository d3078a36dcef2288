"""``bertfit train --seeds``: one run per seed and an honest mean ± std summary."""

from __future__ import annotations

import json
import statistics

import pytest

from bertfit.cli import main
from bertfit.train.run import summarize_metrics

from conftest import write_synthetic_glue


def test_seeds_write_one_run_each_and_a_summary(tmp_path, capsys, tiny_model_dir):
    root = write_synthetic_glue(tmp_path / "glue", n_train=64, n_dev=32)
    run = tmp_path / "run"
    args = ["train", "--output", str(run), "--data-dir", str(root), "--model", str(tiny_model_dir)]
    args += ["--max-seq-length", "32", "--max-steps", "3", "--seeds", "1,2,3", "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["seeds"] == [1, 2, 3]
    best = [json.loads((run / f"seed-{s}" / "results.json").read_text())["best"] for s in (1, 2, 3)]
    assert [json.loads((run / f"seed-{s}" / "config.json").read_text())["trainer"]["seed"]
            for s in (1, 2, 3)] == [1, 2, 3]  # fmt: skip
    losses = [record["train_loss"] for record in best]
    assert len(set(losses)) == 3  # the seeds really differ
    accuracy = [record["dev_accuracy"] for record in best]
    stats = summary["metrics"]["dev_accuracy"]
    assert stats["mean"] == pytest.approx(statistics.mean(accuracy))
    assert stats["std"] == pytest.approx(statistics.stdev(accuracy))
    assert "accuracy:" in out and "±" in out


def test_summary_of_one_seed_has_zero_spread():
    summary = summarize_metrics([{"dev_f1": 0.5, "collapsed": ["dev"], "epoch": 1}])
    assert summary == {"dev_f1": {"mean": 0.5, "std": 0.0, "n": 1}}


def test_bad_seed_lists_are_refused(tmp_path, capsys):
    for text in ("1,x", "1,1", ","):
        with pytest.raises(SystemExit):
            main(["train", "--output", str(tmp_path / "r"), "--seeds", text])
        assert "seeds" in capsys.readouterr().err
