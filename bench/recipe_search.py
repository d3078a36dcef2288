"""Search each task's default recipe: learning rate x epochs x warmup, every cell over seeds.

Every run is what ``bertfit train --task T --learning-rate LR --epochs E --seed S`` does (the
packaged all-MiniLM-L6-v2 unless ``--model``, batch 32, max length 128, AdamW, linear warmup
and decay, the best epoch's dev metrics kept), with the warmup fraction set through the
run config (``optimizer.warmup_fraction``). Results are appended to a JSON-lines file as each
run ends, so an interrupted search loses nothing and ``--resume`` skips finished runs.
``--summarize`` prints a Markdown table per task: each cell's mean and standard deviation
over seeds of every dev metric, best first by the task's main metric.

    python bench/recipe_search.py --tasks mrpc --workers 4 [--device cuda --precision fp32]
    python bench/recipe_search.py --summarize bench/results/recipe_search.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

# The grid per task: learning rates x epochs x warmup fractions. Small data (MRPC, RTE, CoLA,
# STS-B) can afford more epochs; SST-2 (67k pairs) gets one epoch on a CPU-sized budget.
GRIDS: dict[str, dict[str, list]] = {
    "mrpc": {"lr": [2e-5, 5e-5, 1e-4, 2e-4], "epochs": [3, 5, 10], "warmup": [0.1]},
    "stsb": {"lr": [2e-5, 5e-5, 1e-4, 2e-4], "epochs": [3, 5], "warmup": [0.1]},
    "rte": {"lr": [2e-5, 5e-5, 1e-4], "epochs": [3, 5, 10], "warmup": [0.1]},
    "cola": {"lr": [2e-5, 5e-5, 1e-4], "epochs": [3, 5], "warmup": [0.1]},
    "sst2": {"lr": [2e-5, 5e-5, 1e-4], "epochs": [1], "warmup": [0.1]},
}
# Extra cells: warmup matters most at the higher rates, so try 0.06 and 0.2 at MRPC's.
EXTRA = {"mrpc": [(1e-4, 5, 0.06), (1e-4, 5, 0.2), (2e-4, 5, 0.2), (1e-4, 10, 0.2)]}


def cells(task: str) -> list[tuple[float, int, float]]:
    """(learning rate, epochs, warmup fraction) of every grid cell of ``task``."""
    grid = GRIDS[task]
    product = list(itertools.product(grid["lr"], grid["epochs"], grid["warmup"]))
    return product + [cell for cell in EXTRA.get(task, []) if cell not in product]


def run_one(job: dict) -> dict:
    """Train one (task, cell, seed) and return its record (runs in a worker process)."""
    import torch

    from bertfit.train.config import RunConfig
    from bertfit.train.run import train_run

    torch.set_num_threads(job["threads"])
    config = RunConfig(task=job["task"], data_dir=job["data_dir"], model=job["model"])
    config.trainer.epochs = job["epochs"]
    config.trainer.seed = job["seed"]
    config.trainer.max_steps = job["max_steps"]
    config.trainer.save_checkpoints = False  # a search needs results, not resumable runs
    config.trainer.device = job["device"]
    config.trainer.precision = job["precision"]
    config.optimizer.learning_rate = job["lr"]
    config.optimizer.warmup_fraction = job["warmup"]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir, open(os.devnull, "w") as quiet:
        stdout, sys.stdout = sys.stdout, quiet  # one line per run from the parent instead
        try:
            result = train_run(config, run_dir, progress=False)
        finally:
            sys.stdout = stdout
    return {
        **{key: job[key] for key in ("task", "lr", "epochs", "warmup", "seed")},
        "best": result.best,
        "last": result.history[-1],
        "wall_seconds": time.perf_counter() - started,
        "device": job["device"],
        "precision": config.trainer.precision,
        "torch": torch.__version__,
    }


def job_key(record: dict) -> tuple:
    return (record["task"], record["lr"], record["epochs"], record["warmup"], record["seed"])


def search(args) -> None:
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    done = {job_key(r) for r in read_records(output)} if args.resume and output.exists() else set()
    if not args.resume and output.exists():
        output.unlink()
    threads = max(1, (os.cpu_count() or 2) // args.workers)
    jobs = [
        {
            "task": task,
            "lr": lr,
            "epochs": epochs,
            "warmup": warmup,
            "seed": seed,
            "data_dir": args.data_dir,
            "model": args.model,
            "device": args.device,
            "precision": args.precision,
            "threads": threads,
            "max_steps": args.max_steps,
        }
        for task in args.tasks
        for lr, epochs, warmup in (args.cells or cells(task))
        for seed in args.seeds
    ]
    jobs = [job for job in jobs if job_key(job) not in done]
    # Longest first, so the pool does not end waiting on one slow run.
    jobs.sort(key=lambda job: -job["epochs"] * (20 if job["task"] == "sst2" else 1))
    print(f"{len(jobs)} runs, {args.workers} workers x {threads} threads", flush=True)
    # Spawned workers: each initialises torch (and CUDA) itself, never through a fork.
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.workers, mp_context=spawn) as pool, output.open("a") as sink:
        futures = [pool.submit(run_one, job) for job in jobs]
        for finished, future in enumerate(as_completed(futures), 1):
            record = future.result()
            sink.write(json.dumps(record) + "\n")
            sink.flush()
            main = {k: round(v, 4) for k, v in record["best"].items() if k.startswith("dev_")}
            print(f"[{finished}/{len(jobs)}] {job_key(record)} {main}", flush=True)


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summarize(path: Path) -> str:
    """Markdown tables: per task, each cell's dev metrics (mean ± std over seeds)."""
    from bertfit.data.tasks import get_task

    records = read_records(path)
    lines = []
    for task_name in dict.fromkeys(r["task"] for r in records):
        task = get_task(task_name)
        metrics = [f"dev_{name}" for name in task.metrics]
        main = f"dev_{task.main_metric}"
        groups: dict[tuple, list[dict]] = {}
        for record in records:
            if record["task"] == task_name:
                key = (record["lr"], record["epochs"], record["warmup"])
                groups.setdefault(key, []).append(record)
        rows = []
        for (lr, epochs, warmup), runs in groups.items():
            runs.sort(key=lambda r: r["seed"])
            stats = {m: np.array([r["best"][m] for r in runs]) for m in metrics}
            seconds = np.mean([r["wall_seconds"] for r in runs])
            each = " / ".join(f"{r['seed']}: {r['best'][main]:.4f}" for r in runs)
            rows.append((stats[main].mean(), lr, epochs, warmup, stats, each, seconds))
        rows.sort(key=lambda row: -row[0])
        header = " | ".join(m.removeprefix("dev_") for m in metrics)
        lines += [
            f"\n### {task.name} ({len(rows)} cells)\n",
            f"| learning rate | epochs | warmup | {header} | per seed ({main}) | s/run |",
            "|---|---|---|" + "---|" * len(metrics) + "---|---|",
        ]
        for _, lr, epochs, warmup, stats, each, seconds in rows:
            values = " | ".join(_mean_std(stats[m]) for m in metrics)
            lines.append(f"| {lr:g} | {epochs} | {warmup:g} | {values} | {each} | {seconds:.0f} |")
    return "\n".join(lines)


def _mean_std(values: np.ndarray) -> str:
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.4f} ± {std:.4f}"


def _cells(text: str) -> list[tuple[float, int, float]]:
    return [(float(lr), int(e), float(w)) for lr, e, w in (c.split(":") for c in text.split(","))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="mrpc", type=lambda s: s.split(","))
    parser.add_argument("--seeds", default="1,2,3", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "glue"))
    parser.add_argument("--model", default=None, help="model directory (default: packaged)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--cells",
        type=_cells,
        help="only these cells instead of the grid: LR:EPOCHS:WARMUP,... (e.g. 1e-4:5:0.1)",
    )
    parser.add_argument("--output", default=str(REPO / "bench/results/recipe_search.jsonl"))
    parser.add_argument("--max-steps", type=int, help="cut every run short (a smoke test)")
    parser.add_argument("--resume", action="store_true", help="skip runs already in --output")
    parser.add_argument("--summarize", metavar="JSONL", help="print the tables of a results file")
    args = parser.parse_args()
    if args.summarize:
        print(summarize(Path(args.summarize)))
        return 0
    search(args)
    print(summarize(Path(args.output)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
