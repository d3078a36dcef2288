"""Where a training step's time goes: ``torch.profiler`` over bertfit's own trainer on MRPC.

Trains with the defaults of ``bertfit train --task mrpc`` (packaged all-MiniLM-L6-v2, batch 32,
the precision ``--precision auto`` picks), skips ``--skip`` steps (kernels built, caches warm),
profiles the next ``--steps`` and prints the ops by self CPU time::

    .venv/bin/python bench/profile_step.py [--threads 2] [--skip 10] [--steps 16] [--rows 30]

Also writes the table's figures to ``bench/results/profile_step.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from train_speed import mrpc_trainer  # noqa: E402


def profiled_fit(data_dir: str, skip: int, steps: int) -> tuple[profile, float]:
    """Train ``skip + steps`` steps, profiling the last ``steps``; the profile and its seconds."""
    trainer, examples, _ = mrpc_trainer(data_dir, max_steps=skip + steps)
    train = trainer.encode(examples)
    profiler = profile(activities=[ProfilerActivity.CPU])
    train_step, count, clock = trainer._train_step, [0], {}

    def step(batch, *args, **kwargs):
        count[0] += 1
        if count[0] == skip + 1:
            profiler.start()
            clock["start"] = time.perf_counter()
        result = train_step(batch, *args, **kwargs)
        if count[0] == skip + steps:
            profiler.stop()
            clock["stop"] = time.perf_counter()
        return result

    trainer._train_step = step
    trainer.fit(train, None)
    return profiler, clock["stop"] - clock["start"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "glue"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip", type=int, default=10, help="steps before profiling")
    parser.add_argument("--steps", type=int, default=16, help="steps profiled")
    parser.add_argument("--rows", type=int, default=30, help="ops printed")
    parser.add_argument("--output", default=str(REPO / "bench" / "results" / "profile_step.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    profiler, seconds = profiled_fit(args.data_dir, args.skip, args.steps)
    averages = profiler.key_averages()
    print(f"{args.steps} steps in {seconds:.2f} s ({1000 * seconds / args.steps:.0f} ms a step)")
    print(averages.table(sort_by="self_cpu_time_total", row_limit=args.rows))
    total = sum(event.self_cpu_time_total for event in averages)
    ops = sorted(averages, key=lambda event: -event.self_cpu_time_total)[: args.rows]
    record = {
        "steps": args.steps, "seconds": seconds, "threads": args.threads,
        "ops": [
            {"name": event.key, "calls": event.count,
             "self_cpu_ms": event.self_cpu_time_total / 1000,
             "share": event.self_cpu_time_total / total}
            for event in ops
        ],
    }  # fmt: skip
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(record, indent=2))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
