"""Dev calibration of MRPC runs before and after the fitted temperature, over seeds.

For each run directory (``bertfit train --task mrpc --seeds 1,2,3 --output runs/mrpc-cal``
writes ``runs/mrpc-cal/seed-N``), fits and records the run's temperature exactly as training
does (:func:`bertfit.train.run.calibrate_run`, the same as ``bertfit calibrate RUN``), then
prints a Markdown table (dev accuracy and F1, temperature, dev ECE and NLL before and after) with
the mean and sample standard deviation over runs, checks the issue's expectation (ECE after at
most half of before, and at most 0.05), and writes ``bench/results/calibration.json``.

It also measures how small an ECE this dev set can show at all: for each run, labels drawn from
the run's own calibrated probabilities (a model calibrated by construction) give the ECE that
sampling alone produces on that many pairs; the median and 90th percentile of 2,000 draws are
the "calibrated model" columns::

    .venv/bin/python bench/calibration.py runs/mrpc-cal/seed-1 runs/mrpc-cal/seed-2 \\
        runs/mrpc-cal/seed-3
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

from bertfit.config import read_json
from bertfit.probabilities import softmax
from bertfit.temperature import ece
from bertfit.train.run import calibrate_run, load_run_model, read_split

DRAWS = 2000

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ["accuracy", "f1", "temperature", "ece_before", "ece_after", "nll_before", "nll_after",
           "ece_calibrated_median", "ece_calibrated_p90"]  # fmt: skip


def measure(run: Path) -> dict:
    """One run's best dev metrics and its calibration, freshly fitted and recorded."""
    calibration = calibrate_run(run)
    best = read_json(run / "results.json")["best"]
    config = read_json(run / "config.json")
    return {
        "run": str(run),
        "seed": config["trainer"]["seed"],
        "accuracy": best["dev_accuracy"],
        "f1": best["dev_f1"],
        "temperature": calibration.temperature,
        "ece_before": calibration.before["ece"],
        "ece_after": calibration.after["ece"],
        "nll_before": calibration.before["nll"],
        "nll_after": calibration.after["nll"],
        "examples": calibration.examples,
        **sampling_floor(run, calibration.temperature),
    }


def sampling_floor(run: Path, temperature: float, seed: int = 0) -> dict[str, float]:
    """The ECE a calibrated model shows on this dev set from sampling alone: labels drawn from
    the run's calibrated probabilities, ``DRAWS`` times."""
    classifier, config, task = load_run_model(run)
    dev = read_split(config, task, task.dev_splits[0], None)
    probabilities = softmax(classifier.logits(dev.columns).astype(np.float64), temperature)
    rng = np.random.default_rng(seed)
    cumulative = probabilities.cumsum(axis=1)
    draws = []
    for _ in range(DRAWS):
        labels = (rng.random((len(probabilities), 1)) > cumulative).sum(axis=1)
        draws.append(ece(probabilities, labels))
    return {
        "ece_calibrated_median": float(np.median(draws)),
        "ece_calibrated_p90": float(np.percentile(draws, 90)),
    }


def table(rows: list[dict]) -> str:
    """The Markdown table, a row per run and the mean ± std over them."""
    lines = [
        "| seed | dev accuracy | dev F1 | temperature | ECE before | ECE after | NLL before "
        "| NLL after | ECE of a calibrated model, median | its 90th percentile |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        cells = " | ".join(f"{row[key]:.4f}" for key in COLUMNS)
        lines.append(f"| {row['seed']} | {cells} |")
    if len(rows) > 1:
        values = {key: [row[key] for row in rows] for key in COLUMNS}
        cells = " | ".join(
            f"{statistics.mean(v):.4f} ± {statistics.stdev(v):.4f}" for v in values.values()
        )
        lines.append(f"| mean ± std | {cells} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories")
    parser.add_argument("--output", default=str(REPO / "bench" / "results" / "calibration.json"))
    args = parser.parse_args()
    rows = [measure(run) for run in args.runs]
    checks = {
        "ece_after_at_most_half_of_before": all(
            r["ece_after"] <= r["ece_before"] / 2 for r in rows
        ),
        "ece_after_at_most_0.05": all(r["ece_after"] <= 0.05 for r in rows),
    }
    print(table(rows))
    print(json.dumps(checks))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps({"runs": rows, "checks": checks}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
