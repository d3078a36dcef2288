"""Class weights and early stopping on real GLUE data, over seeds (issue 28's measurements).

Every run is what ``bertfit train --task T --seed S`` does with the task's default recipe,
plus one variant:

- ``default``: nothing else (the baseline of both comparisons);
- ``balanced``: ``--class-weights balanced`` (inverse class frequency in the loss);
- ``patience2``: ``--early-stopping-patience 2`` (evaluated per epoch, as by default).

After training, the run's best model is evaluated on dev with the per-class report
(``bertfit evaluate --report``), so each record holds every class's precision, recall and F1,
the macro average, the task's own metrics, the wall time of training and where a run stopped.
Each run is a fresh process (``--run-one``), its record appended to a JSON-lines file as it
ends; a rerun skips the runs already there, so an interrupted measurement loses only the run in
flight. ``--summarize`` prints the tables of ``docs/results.md``.

    python bench/label_shapes.py --tasks mrpc,cola --variants default,balanced --seeds 1,2,3
    python bench/label_shapes.py --tasks mrpc --variants patience2 --seeds 1,2,3
    python bench/label_shapes.py --summarize bench/results/label_shapes.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO / "bench/results/label_shapes.jsonl"
VARIANTS = {
    "default": {},
    "balanced": {"class_weights": "balanced"},
    "patience2": {"early_stopping_patience": 2},
}


def run_one(job: dict) -> dict:
    """Train one (task, variant, seed), evaluate its best model with the report, return the
    record. Runs in its own process; the run directory is deleted afterwards."""
    import torch

    from bertfit.train.config import RunConfig
    from bertfit.train.run import evaluate_run, train_run

    torch.set_num_threads(job["threads"])
    config = RunConfig(task=job["task"], data_dir=job["data_dir"])
    config.trainer.seed = job["seed"]
    config.trainer.max_steps = job["max_steps"]
    config.trainer.save_checkpoints = False  # results, not resumable runs
    for key, value in VARIANTS[job["variant"]].items():
        setattr(config.trainer, key, value)
    with tempfile.TemporaryDirectory() as run_dir:
        started = time.perf_counter()
        result = train_run(config, run_dir, progress=False)
        wall = time.perf_counter() - started
        evaluation = evaluate_run(run_dir, report=True)
        results = json.loads((Path(run_dir) / "results.json").read_text())
    (split,) = evaluation.splits
    return {
        **{key: job[key] for key in ("task", "variant", "seed")},
        "best": result.best,
        "steps": result.steps,
        "planned_steps": config.optimizer.total_steps,
        "epochs": config.trainer.epochs,
        "stopped_early": results.get("stopped_early"),
        "report": split.report,
        "wall_seconds": wall,
        "precision": config.trainer.precision,
        "threads": job["threads"],
        "torch": torch.__version__,
    }


def job_key(record: dict) -> tuple:
    return (record["task"], record["variant"], record["seed"])


def measure(args) -> None:
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    done = {job_key(r) for r in read_records(output)} if output.exists() else set()
    jobs = [
        {
            "task": task,
            "variant": variant,
            "seed": seed,
            "data_dir": args.data_dir,
            "threads": args.threads,
            "max_steps": args.max_steps,
        }
        for seed in args.seeds
        for task in args.tasks
        for variant in args.variants
    ]
    jobs = [job for job in jobs if job_key(job) not in done]
    print(f"{len(jobs)} runs to go ({len(done)} already in {output})", flush=True)
    for number, job in enumerate(jobs, 1):
        record = _run_in_child(job)
        with output.open("a") as sink:
            sink.write(json.dumps(record) + "\n")
        print(f"[{number}/{len(jobs)}] {job_key(record)} {_headline(record)}", flush=True)


def _run_in_child(job: dict) -> dict:
    """``run_one`` in a fresh interpreter: no allocator or thread state carried between runs."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    completed = subprocess.run(
        [sys.executable, __file__, "--run-one", json.dumps(job)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _headline(record: dict) -> str:
    minority = minority_class(record)
    row = record["report"]["labels"][minority]
    stop = record["stopped_early"]
    return (
        f"{_task_metric(record)} minority {minority}: recall {row['recall']:.4f} "
        f"f1 {row['f1']:.4f}, macro f1 {record['report']['averages']['macro']['f1']:.4f}, "
        f"{record['wall_seconds']:.0f} s" + (f", stopped at step {stop['step']}" if stop else "")
    )


def minority_class(record: dict) -> str:
    """The dev set's smallest class (CoLA: unacceptable, MRPC: not a paraphrase)."""
    labels = record["report"]["labels"]
    return min(labels, key=lambda name: labels[name]["support"])


def _task_metric(record: dict) -> str:
    return ", ".join(
        f"{key[4:]} {value:.4f}"
        for key, value in record["best"].items()
        if key.startswith("dev_") and isinstance(value, float)
    )


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summarize(path: Path) -> str:
    """Markdown tables: per task and variant, mean ± sd over seeds of the minority class's
    recall and F1, macro F1 and the task's metrics; then early stopping against the full run."""
    records = read_records(path)
    lines = []
    for task in sorted({r["task"] for r in records}):
        of_task = [r for r in records if r["task"] == task]
        metric_keys = [k for k in of_task[0]["best"] if k.startswith("dev_") and k != "dev_loss"]
        minority = minority_class(of_task[0])
        header = ["variant", "seeds", f"recall ({minority})", f"F1 ({minority})", "macro F1"]
        header += [key[4:] for key in metric_keys] + ["s/run", "steps"]
        lines += [f"### {task}", "", _row(header), _row(["---"] * len(header))]
        for variant in VARIANTS:
            runs = [r for r in of_task if r["variant"] == variant]
            if not runs:
                continue
            rows = [r["report"]["labels"][minority] for r in runs]
            cells = [variant, ",".join(str(r["seed"]) for r in runs)]
            cells += [
                _mean_sd([row["recall"] for row in rows]),
                _mean_sd([row["f1"] for row in rows]),
            ]
            cells.append(_mean_sd([r["report"]["averages"]["macro"]["f1"] for r in runs]))
            cells += [_mean_sd([r["best"][key] for r in runs]) for key in metric_keys]
            cells.append(f"{np.median([r['wall_seconds'] for r in runs]):.0f}")
            cells.append("/".join(str(r["steps"]) for r in runs))
            lines.append(_row(cells))
        lines.append("")
    lines += _early_stopping_table(records)
    return "\n".join(lines)


def _early_stopping_table(records: list[dict]) -> list[str]:
    """``patience2`` against ``default`` paired by task and seed: steps and wall time, the
    share of training steps saved, and the main dev metric each kept."""
    runs = {job_key(r): r for r in records}
    pairs = [
        (runs[(task, "default", seed)], stopped)
        for (task, variant, seed), stopped in sorted(runs.items())
        if variant == "patience2" and (task, "default", seed) in runs
    ]
    if not pairs:
        return []
    # Steps are what early stopping saves; wall times are printed too, but runs of one
    # measurement may have shared the machine with different loads.
    header = ["task", "seed", "full: steps, s", "patience 2: steps, s", "steps saved"]
    header += ["full: dev metric", "patience 2: dev metric", "stopped"]
    lines = ["### early stopping", "", _row(header), _row(["---"] * len(header))]
    saved = []
    for full, early in pairs:
        key = next(k for k in full["best"] if k.startswith("dev_") and k != "dev_loss")
        saved.append(1 - early["steps"] / full["steps"])
        stop = early["stopped_early"]
        lines.append(
            _row(
                [
                    full["task"],
                    str(full["seed"]),
                    f"{full['steps']}, {full['wall_seconds']:.0f}",
                    f"{early['steps']}, {early['wall_seconds']:.0f}",
                    f"{saved[-1]:.1%}",
                    f"{key[4:]} {full['best'][key]:.4f}",
                    f"{early['best'][key]:.4f}",
                    f"epoch {stop['epoch']}" if stop else "no (ran to the end)",
                ]
            )
        )
    lines += ["", f"median share of steps saved: {np.median(saved):.1%}", ""]
    return lines


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _mean_sd(values: list[float]) -> str:
    values = np.asarray(values, dtype=float)
    sd = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.4f} ± {sd:.4f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="mrpc,cola", type=lambda s: s.split(","))
    parser.add_argument("--variants", default="default,balanced", type=lambda s: s.split(","))
    parser.add_argument("--seeds", default="1,2,3", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "glue"))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--max-steps", type=int, help="cut every run short (a smoke test)")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT))
    parser.add_argument("--summarize", metavar="JSONL", help="print the tables of a results file")
    parser.add_argument("--run-one", metavar="JOB", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_one:
        print(json.dumps(run_one(json.loads(args.run_one))))
        return 0
    if args.summarize:
        print(summarize(Path(args.summarize)))
        return 0
    unknown = [variant for variant in args.variants if variant not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r}; expected one of {', '.join(VARIANTS)}")
    measure(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
