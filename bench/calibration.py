"""Dev calibration of MRPC runs before and after the fitted temperature, over seeds.

For each run directory (``bertfit train --task mrpc --seeds 1,2,3 --output runs/mrpc-cal``
writes ``runs/mrpc-cal/seed-N``), fits and records the run's temperature exactly as training
does (:func:`bertfit.train.run.calibrate_run`, the same as ``bertfit calibrate RUN``), then
prints a Markdown table (dev accuracy and F1, temperature, dev ECE and NLL before and after) with
the mean and sample standard deviation over runs, checks the issue's expectation (ECE after at
most half of before, and at most 0.05), and writes ``bench/results/calibration.json``::

    .venv/bin/python bench/calibration.py runs/mrpc-cal/seed-1 runs/mrpc-cal/seed-2 \\
        runs/mrpc-cal/seed-3
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from bertfit.config import read_json
from bertfit.train.run import calibrate_run

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ["accuracy", "f1", "temperature", "ece_before", "ece_after", "nll_before", "nll_after"]


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
    }


def table(rows: list[dict]) -> str:
    """The Markdown table, a row per run and the mean ± std over them."""
    lines = [
        "| seed | dev accuracy | dev F1 | temperature | ECE before | ECE after | NLL before "
        "| NLL after |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
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
