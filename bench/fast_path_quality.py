"""Does the fast default path train as well as a plain one? MRPC dev metrics over seeds.

Trains ``bertfit train --task mrpc`` with its defaults (the task's recipe, packaged
all-MiniLM-L6-v2) once per seed on each of two paths, and reports the best dev accuracy and F1
of each run, with their mean and sample standard deviation per path:

* ``fast``: the defaults: length-grouped batches, padding-free packed tokens, the
  first-token-only last layer, bertfit's dropout masks, fused AdamW;
* ``plain``: a plain fp32 padded-batch loop: random batches padded to their longest pair,
  every token through every layer, ``torch``'s own dropout, ``foreach`` AdamW.

Both run in fp32 here (``--precision auto`` resolves to fp32 on a CPU without native bf16).
Each run is its own process; results go line by line to ``--output`` (JSON Lines), so an
interrupted invocation continues where it stopped. ``--jobs 2 --threads 1`` runs two at once::

    .venv/bin/python bench/fast_path_quality.py --seeds 1,2,3 --jobs 2 --threads 1
    .venv/bin/python bench/fast_path_quality.py --summarize
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PATHS = ("fast", "plain")
METRICS = ("dev_accuracy", "dev_f1")


def plain_path(config) -> None:
    """Turn every one of bertfit's training levers off (in this process only)."""
    sys.path.insert(0, str(REPO / "bench"))
    from train_levers import apply_variant

    config.trainer.group_by_length = False
    for variant in ("padded", "torch-dropout", "foreach-adamw"):
        apply_variant(variant, config)


def worker(args) -> None:
    """Train one (path, seed) run and print its best dev record as JSON on the last line."""
    import torch

    from bertfit.train.config_file import load_run_config
    from bertfit.train.run import train_run

    torch.set_num_threads(args.threads)
    config = load_run_config(None, [("task", "mrpc")])
    config.data_dir = args.data_dir
    config.trainer.seed = args.seed
    config.trainer.save_checkpoints = False
    if args.path == "plain":
        plain_path(config)
    with tempfile.TemporaryDirectory(prefix="bertfit-quality-") as run_dir:
        result = train_run(config, run_dir, progress=False)
    record = {key: result.best[key] for key in result.best if key.startswith("dev")}
    record.update(
        path=args.path, seed=args.seed, steps=result.steps, epoch=result.best.get("epoch")
    )
    print(json.dumps(record))


def run_one(args, path: str, seed: int) -> dict:
    command = [
        sys.executable,
        __file__,
        "--worker",
        "--path",
        path,
        "--seed",
        str(seed),
        "--threads",
        str(args.threads),
        "--data-dir",
        args.data_dir,
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"{path} seed {seed} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def read_records(output: Path) -> list[dict]:
    if not output.is_file():
        return []
    return [json.loads(line) for line in output.read_text().splitlines() if line.strip()]


def summarize(records: list[dict]) -> dict:
    summary = {}
    for path in PATHS:
        runs = sorted((r for r in records if r["path"] == path), key=lambda r: r["seed"])
        if not runs:
            continue
        summary[path] = {"seeds": [r["seed"] for r in runs]}
        for metric in METRICS:
            values = [r[metric] for r in runs]
            summary[path][metric] = {
                "values": values,
                "mean": statistics.mean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            }
    return summary


def print_summary(summary: dict) -> None:
    print(f"{'path':6s} {'seeds':>10s}  " + "  ".join(f"{m:>22s}" for m in METRICS))
    for path, entry in summary.items():
        cells = [f"{entry[m]['mean']:.4f} ± {entry[m]['std']:.4f}" for m in METRICS]
        seeds = ",".join(str(s) for s in entry["seeds"])
        print(f"{path:6s} {seeds:>10s}  " + "  ".join(f"{c:>22s}" for c in cells))
        for metric in METRICS:
            values = ", ".join(f"{v:.4f}" for v in entry[metric]["values"])
            print(f"{'':6s} {metric}: {values}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated seeds")
    parser.add_argument("--paths", default=",".join(PATHS), help="which paths to run")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per run")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once")
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "glue"))
    parser.add_argument("--output", default=str(REPO / "bench/results/fast_path_quality.jsonl"))
    parser.add_argument("--summarize", action="store_true", help="only print the summary")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--path", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return 0
    output = Path(args.output)
    if not args.summarize:
        done = {(r["path"], r["seed"]) for r in read_records(output)}
        todo = [
            (path, int(seed))
            for seed in args.seeds.split(",")
            for path in args.paths.split(",")
            if (path, int(seed)) not in done
        ]
        output.parent.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(args.jobs) as pool, output.open("a") as sink:
            for record in pool.map(lambda job: run_one(args, *job), todo):
                sink.write(json.dumps(record) + "\n")
                sink.flush()
                print(
                    f"{record['path']} seed {record['seed']}: "
                    + ", ".join(f"{m} {record[m]:.4f}" for m in METRICS),
                    flush=True,
                )
    summary = summarize(read_records(output))
    print_summary(summary)
    output.with_suffix(".summary.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
