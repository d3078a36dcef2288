"""Fine-tune the default recipe on GLUE MRPC and report quality, speed and memory.

Runs what ``bertfit train --task mrpc`` does by default (the packaged all-MiniLM-L6-v2, MRPC
train, batch 32, max length 128, and MRPC's recipe: peak learning rate 1e-4, 5 epochs, 6%
warmup; see bertfit.train.recipes) and prints, and writes as JSON: dev accuracy and F1, train
examples/s, wall time and peak RSS.

    .venv/bin/python bench/mrpc_finetune.py --data-dir ../shared/data/glue [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

import bertfit
from bertfit.train.config_file import load_run_config
from bertfit.train.run import train_run

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "glue"))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--max-steps", type=int, default=None, help="for a quick smoke run")
    parser.add_argument("--output", default=str(REPO / "bench" / "results" / "mrpc_finetune.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    config = load_run_config(None, [("task", "mrpc")])
    config.data_dir = args.data_dir
    if args.seed is not None:
        config.trainer.seed = args.seed
    config.trainer.max_steps = args.max_steps
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        result = train_run(config, run_dir, progress=False)
    wall = time.perf_counter() - started

    best = result.best
    train_seconds = sum(record["train_seconds"] for record in result.history)
    examples = sum(record["train_examples"] for record in result.history)
    figures = {
        "recipe": {
            "model": "all-MiniLM-L6-v2 (packaged)",
            "epochs": config.trainer.epochs,
            "batch_size": config.trainer.batch_size,
            "max_seq_length": config.max_seq_length,
            "learning_rate": config.optimizer.learning_rate,
            "warmup_fraction": config.optimizer.warmup_fraction,
            "seed": config.trainer.seed,
            "steps": result.steps,
        },
        "dev_accuracy": best["dev_accuracy"],
        "dev_f1": best["dev_f1"],
        "best_epoch": best["epoch"],
        "history": result.history,
        "train_examples_per_second": examples / train_seconds,
        "train_seconds": train_seconds,
        "wall_seconds": wall,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "bertfit": bertfit.__version__,
        },
    }
    print(
        f"MRPC dev accuracy {figures['dev_accuracy']:.4f}  F1 {figures['dev_f1']:.4f} "
        f"(best epoch {figures['best_epoch']})\n"
        f"train {figures['train_examples_per_second']:.1f} examples/s, "
        f"{train_seconds:.0f} s training, {wall:.0f} s wall, "
        f"peak RSS {figures['peak_rss_mib']:.0f} MiB, {figures['threads']} threads"
    )
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
