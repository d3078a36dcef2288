"""What bertfit's memory levers save and cost: the whole MRPC job with each combination.

Runs ``bertfit train --task mrpc --max-steps 120`` (its defaults, 2 threads) as a whole process
per combination of the two levers, alternated over ``--reps`` repetitions, and reports each
run's peak RSS (``ru_maxrss``) and wall time:

* the heap trim every 5 steps (the default) or every 10 (``trainer.release_memory_every_steps``);
* activations rebuilt in backward (the default, ``bertfit.model.recompute``) or kept.

    .venv/bin/python bench/memory_levers.py [--reps 2]

Writes ``bench/results/memory_levers.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from train_levers import apply_variant  # noqa: E402
from train_speed import timed_process  # noqa: E402

COMBINATIONS = {
    "trim every 5, rebuild activations": (5, True),
    "trim every 10, rebuild activations": (10, True),
    "trim every 5, keep activations": (5, False),
    "trim every 10, keep activations": (10, False),
}


def train(activations: str, argv: list[str]) -> int:
    """``bertfit train`` in this process; ``activations`` is ``rebuild`` or ``keep``."""
    from bertfit.cli import main as cli_main

    if activations == "keep":
        apply_variant("keep-activations", config=None)  # patches the encoder, not the config
    return cli_main(argv)


def run_once(args, trim_every: int, rebuild: bool) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one whole job."""
    with tempfile.TemporaryDirectory() as scratch:
        command = [
            sys.executable, __file__, "--train", "rebuild" if rebuild else "keep",
            "train", "--task", "mrpc", "--max-steps", "120", "--data-dir", args.data_dir,
            "--output", scratch, "--quiet", f"trainer.release_memory_every_steps={trim_every}",
        ]  # fmt: skip
        return timed_process(command, args.threads)


def main() -> int:
    if sys.argv[1:2] == ["--train"]:
        return train(sys.argv[2], sys.argv[3:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "glue"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--output", default=str(REPO / "bench" / "results" / "memory_levers.json"))
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {name: [] for name in COMBINATIONS}
    for rep in range(args.reps):
        for name, (trim_every, rebuild) in COMBINATIONS.items():
            seconds, rss = run_once(args, trim_every, rebuild)
            runs[name].append({"seconds": seconds, "peak_rss_mib": rss})
            print(f"  rep {rep + 1}: {name:36s} {rss:7.0f} MiB {seconds:7.1f} s", flush=True)
    print(f"\n{'levers':36s} {'peak RSS, MiB':>16s} {'wall s':>16s}")
    for name, figures in runs.items():
        rss = " / ".join(f"{f['peak_rss_mib']:.0f}" for f in figures)
        wall = " / ".join(f"{f['seconds']:.1f}" for f in figures)
        print(f"{name:36s} {rss:>16s} {wall:>16s}")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps({"threads": args.threads, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
