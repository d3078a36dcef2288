"""Train throughput of one process against ``torchrun`` processes on this machine's CPUs.

Runs ``bertfit train --task mrpc --max-steps N`` (the packaged MiniLM, max length 128) as
1 process with T threads, then as P processes with T / P threads each (``gloo``), at the same
global batch, and prints train examples/s (the training part of the history record, without
the final evaluation), wall time and the load average before and after each run.

    .venv/bin/python bench/ddp_scaling.py --data-dir ../shared/data/glue [--processes 2]
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

REPO = Path(__file__).resolve().parents[1]


def load() -> str:
    """The 1-, 5- and 15-minute load averages (other work on the machine skews figures)."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run(launcher: list[str], threads: int, run_dir: Path, args) -> dict:
    command = [
        *launcher, "train", "--task", "mrpc", "--data-dir", args.data_dir,
        "--output", str(run_dir), "--max-steps", str(args.max_steps), "--quiet",
        "--batch-size", str(args.batch_size // args.processes_of(launcher)),
        "trainer.save_checkpoints=false",
    ]  # fmt: skip
    before, started = load(), time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    record = json.loads((run_dir / "history.jsonl").read_text().splitlines()[-1])
    return {
        "examples_per_second": record["examples_per_second"],
        "train_seconds": record["train_seconds"],
        "wall_seconds": wall,
        "load_before": before,
        "load_after": load(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "glue"))
    parser.add_argument("--threads", type=int, default=2, help="threads in all (default: 2)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32, help="global batch (default: 32)")
    args = parser.parse_args()
    single = [sys.executable, "-m", "bertfit"]
    multi = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc-per-node", str(args.processes), "-m", "bertfit",
    ]  # fmt: skip
    args.processes_of = lambda launcher: args.processes if launcher is multi else 1
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["1 process"] = run(single, args.threads, Path(tmp) / "one", args)
        name = f"{args.processes} processes"
        results[name] = run(multi, max(1, args.threads // args.processes), Path(tmp) / "n", args)
    for name, figures in results.items():
        print(
            f"{name:>12}: {figures['examples_per_second']:6.1f} train examples/s, "
            f"{figures['wall_seconds']:5.1f} s wall, load {figures['load_before']} -> "
            f"{figures['load_after']}"
        )
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
