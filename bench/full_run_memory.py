"""Peak memory of a whole default MRPC fine-tuning run: bertfit against transformers.

Each system runs its own full default job once, as a whole process, one after the other (never
two at a time), and the script reports the process's peak RSS (``ru_maxrss``, what
``/usr/bin/time -v`` prints as "Maximum resident set size") and its wall time:

* ``bertfit-bf16``: ``bertfit train --task mrpc`` (5 epochs, 575 steps; bf16 autocast, which
  ``--precision auto`` picks on a CPU with AVX-512 BF16 or AMX; pass ``--precision bf16``
  explicitly so a CPU without it fails loudly rather than measuring fp32 twice);
* ``bertfit-fp32``: the same with ``--precision fp32``;
* ``hf-default``: ``bench/peers/hf_mrpc.py --whole --steps 345``, transformers' ``Trainer`` in
  its defaults (fp32), 3 epochs of batch 32 as its ``num_train_epochs`` default gives, then an
  evaluation on dev and a save;
* ``hf-grouped-bf16``: the same job with ``group_by_length`` and ``bf16=True``.

The same data (GLUE MRPC) and weights (the packaged all-MiniLM-L6-v2) for all, 2 threads.

    .venv/bin/python bench/full_run_memory.py [--systems bertfit-bf16,hf-default] [--seed 2]
        [--keep runs/memory]

``--keep DIR`` keeps bertfit's run directories (``DIR/bertfit-bf16``...) instead of deleting
them, so a measured run can serve as an ordinary run afterwards. Writes
``bench/results/full_run_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from export_inference import machine_and_load, write_record  # noqa: E402
from train_speed import HF_SCRIPT, timed_process  # noqa: E402

SYSTEMS = ("bertfit-bf16", "bertfit-fp32", "hf-default", "hf-grouped-bf16")
HF_FULL_STEPS = 345  # 3 epochs of 3,668 pairs in batches of 32: the Trainer's default epochs


def command_of(system: str, args, output: Path) -> list[str]:
    """The whole job of ``system``, writing to ``output``."""
    if system.startswith("bertfit-"):
        bertfit_cli = str(Path(sys.executable).with_name("bertfit"))
        return [
            bertfit_cli, "train", "--task", "mrpc", "--data-dir", args.data_dir,
            "--precision", system.removeprefix("bertfit-"), "--seed", str(args.seed),
            "--output", str(output), "--quiet",
        ]  # fmt: skip
    return [
        sys.executable, str(HF_SCRIPT), "--whole", "--steps", str(HF_FULL_STEPS),
        "--setting", system.removeprefix("hf-"), "--model", args.model,
        "--data-dir", str(Path(args.data_dir) / "MRPC"), "--threads", str(args.threads),
    ]  # fmt: skip


def measure(system: str, args) -> dict:
    """Wall seconds and peak RSS of one whole job of ``system`` (and its dev accuracy when
    bertfit's run says it)."""
    scratch = Path(tempfile.mkdtemp(prefix=f"{system}-"))
    output = Path(args.keep) / system if args.keep else scratch / "run"
    try:
        seconds, rss = timed_process(command_of(system, args, output), args.threads)
        record = {"seconds": seconds, "peak_rss_mib": rss}
        results = output / "results.json"
        if results.is_file():
            record["dev_accuracy"] = json.loads(results.read_text())["best"].get("dev_accuracy")
        return record
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "glue"))
    parser.add_argument("--model", default=None, help="all-MiniLM-L6-v2 directory (packaged)")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42, help="bertfit's seed (its default: 42)")
    parser.add_argument("--keep", help="keep bertfit's run directories under this directory")
    parser.add_argument(
        "--output", default=str(REPO / "bench" / "results" / "full_run_memory.json")
    )
    args = parser.parse_args()
    if args.model is None:
        from bertfit.model.presets import resolve_model_dir  # only when no --model is given

        args.model = str(resolve_model_dir(None))
    systems = args.systems.split(",")
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        parser.error(f"unknown systems {unknown}; choose from {', '.join(SYSTEMS)}")
    record = {"machine": machine_and_load(), "threads": args.threads, "runs": {}}
    print(f"{'system':18s} {'peak RSS MiB':>12s} {'seconds':>8s}", flush=True)
    for system in systems:
        run = measure(system, args)
        record["runs"][system] = run
        print(f"{system:18s} {run['peak_rss_mib']:12.0f} {run['seconds']:8.1f}", flush=True)
    write_record(Path(args.output), record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
