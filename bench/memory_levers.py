"""What bertfit's memory levers save and cost: the whole MRPC job with each combination.

Runs ``bertfit train --task mrpc --max-steps STEPS`` (its defaults, 2 threads) as a whole
process per combination of the levers, alternated over ``--reps`` repetitions, and reports each
run's peak RSS (``ru_maxrss``) and wall time:

* oneDNN's primitive caches bounded (the default, ``bertfit.train.memory``) or at PyTorch's
  1,024 entries;
* no heap trim (the default) or one every 5 steps (``trainer.release_memory_every_steps``);
* activations rebuilt in backward (the default, ``bertfit.model.recompute``) or kept.

    .venv/bin/python bench/memory_levers.py [--reps 2] [--steps 120]

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

# name: (kernel caches on, steps between heap trims or None, activations rebuilt)
COMBINATIONS = {
    "defaults: caches bounded, no trims, rebuild": (False, None, True),
    "caches bounded, trim every 5, rebuild": (False, 5, True),
    "caches on, trim every 5, rebuild (before)": (True, 5, True),
    "caches on, no trims, rebuild": (True, None, True),
    "caches bounded, no trims, keep activations": (False, None, False),
}


def train(levers: str, argv: list[str]) -> int:
    """``bertfit train`` in this process; ``levers`` is ``caches-rebuild``, ``none-keep``..."""
    from bertfit.cli import main as cli_main

    caches, activations = levers.split("-")
    if caches == "caches":
        apply_variant("kernel-caches", config=None)  # sets the environment, not the config
    if activations == "keep":
        apply_variant("keep-activations", config=None)  # patches the encoder, not the config
    return cli_main(argv)


def run_once(args, caches: bool, trim_every: int | None, rebuild: bool) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one whole job."""
    levers = f"{'caches' if caches else 'none'}-{'rebuild' if rebuild else 'keep'}"
    trim = "null" if trim_every is None else trim_every
    with tempfile.TemporaryDirectory() as scratch:
        command = [
            sys.executable, __file__, "--train", levers,
            "train", "--task", "mrpc", "--max-steps", str(args.steps), "--data-dir", args.data_dir,
            "--output", scratch, "--quiet", f"trainer.release_memory_every_steps={trim}",
        ]  # fmt: skip
        return timed_process(command, args.threads)


def main() -> int:
    if sys.argv[1:2] == ["--train"]:
        return train(sys.argv[2], sys.argv[3:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "glue"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--output", default=str(REPO / "bench" / "results" / "memory_levers.json"))
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {name: [] for name in COMBINATIONS}
    for rep in range(args.reps):
        for name, levers in COMBINATIONS.items():
            seconds, rss = run_once(args, *levers)
            runs[name].append({"seconds": seconds, "peak_rss_mib": rss})
            print(f"  rep {rep + 1}: {name:44s} {rss:7.0f} MiB {seconds:7.1f} s", flush=True)
    print(f"\n{'levers':44s} {'peak RSS, MiB':>16s} {'wall s':>16s}")
    for name, figures in runs.items():
        rss = " / ".join(f"{f['peak_rss_mib']:.0f}" for f in figures)
        wall = " / ".join(f"{f['seconds']:.1f}" for f in figures)
        print(f"{name:44s} {rss:>16s} {wall:>16s}")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    report = {"threads": args.threads, "steps": args.steps, "runs": runs}
    Path(args.output).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
