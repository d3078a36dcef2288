"""Which of bertfit's training speed levers pay: each one turned off in turn, side by side.

Variants of bertfit's trainer on MRPC (the defaults of ``bertfit train --task mrpc``, packaged
all-MiniLM-L6-v2, batch 32), each in its own process, alternated over ``--reps`` repetitions,
each timing ``--steps`` optimizer steps after ``--warmup-steps``:

* ``all``: the defaults (padding-free packed batches, first-token-only last layer, cheap dropout
  masks, fused AdamW);
* ``padded``: batches padded to their longest pair (``trainer.padding_free=false``);
* ``full-last-layer``: the last layer computed for every token, as a plain encoder does;
* ``torch-dropout``: dropout masks from ``torch``'s own ``bernoulli_``;
* ``foreach-adamw``: AdamW's ``foreach`` kernels instead of the fused one;
* ``heap-trim`` (a lever *added*): ``malloc_trim`` every 5 steps
  (``trainer.release_memory_every_steps=5``, the default before the kernel caches were bounded);
* ``kernel-caches``: oneDNN's primitive caches at PyTorch's 1,024 entries (see
  :mod:`bertfit.train.memory`);
* ``keep-activations``: autograd keeps the GELU outputs and dropped attention probabilities
  rather than rebuilding them in backward (``bertfit.model.recompute``);
* ``row-multiple-N``: packed batches' rows rounded up to a multiple of N instead of
  ``bertfit.inference.PADDING_FREE_ROW_MULTIPLE`` (``row-multiple-1``: not rounded);
* ``length-multiple-N``: attention's padded width rounded up to a multiple of N instead of
  ``bertfit.inference.PADDING_FREE_LENGTH_MULTIPLE`` (``length-multiple-1``: not rounded);
* ``onednn-cache-N``: oneDNN's primitive cache at N entries instead of bertfit's bound;
* ``compiled`` (a lever *added*, not removed): each Transformer layer compiled by
  ``torch.compile`` (inductor, dynamic shapes), with torch's dropout inside the compiled code so
  that inductor draws the masks itself and fuses them with the adds and LayerNorms around them.
  Compilation happens in the warm-up steps, which are not timed (raise ``--warmup-steps``).

    .venv/bin/python bench/train_levers.py [--threads 2] [--reps 2] [--variants a,b]

Prints examples/s per variant (median) and the defaults' speed relative to each, and writes
``bench/results/train_levers.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VARIANTS = (
    "all",
    "padded",
    "full-last-layer",
    "torch-dropout",
    "foreach-adamw",
    "heap-trim",
    "kernel-caches",
    "keep-activations",
    "compiled",
)
#: Variants that take a number N after their prefix.
NUMBERED_VARIANTS = ("row-multiple-", "length-multiple-", "onednn-cache-")


def apply_variant(variant: str, config) -> None:
    """Turn one lever off (in this process only)."""
    import torch.nn.functional as F

    from bertfit.model import dropout as dropout_module
    from bertfit.model import encoder as encoder_module

    if variant.startswith("row-multiple-"):
        import bertfit.inference

        bertfit.inference.PADDING_FREE_ROW_MULTIPLE = int(variant.removeprefix("row-multiple-"))
    elif variant.startswith("length-multiple-"):
        import bertfit.inference

        bertfit.inference.PADDING_FREE_LENGTH_MULTIPLE = int(
            variant.removeprefix("length-multiple-")
        )
    elif variant.startswith("onednn-cache-"):
        import os

        os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = variant.removeprefix("onednn-cache-")
    elif variant == "padded":
        config.trainer.padding_free = False
    elif variant == "full-last-layer":
        encoder_module.BertEncoder.pool_padding_free = lambda self, batch: (
            self.forward_padding_free(batch).pooled_output
        )
    elif variant == "torch-dropout":

        def torch_dropout(x, p, training):
            return F.dropout(x, p, training)

        dropout_module.dropout = torch_dropout
        encoder_module.dropout = torch_dropout
    elif variant == "foreach-adamw":
        config.optimizer.implementation = "foreach"
    elif variant == "heap-trim":
        config.trainer.release_memory_every_steps = 5
    elif variant == "kernel-caches":
        import os

        # oneDNN's own capacities (the trainer keeps values already in the environment)
        os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = "1024"
        os.environ["LRU_CACHE_CAPACITY"] = "1024"
    elif variant == "keep-activations":
        import contextlib

        encoder_module.recompute_when_saved = lambda *args: contextlib.nullcontext()
        dropout_module.recompute_when_saved = lambda *args: contextlib.nullcontext()
    elif variant == "compiled":
        import torch

        apply_variant("keep-activations", config)  # the rebuild steps aside under compile anyway
        dropout_module.dropout_and_recipe = lambda x, p: (F.dropout(x, p, True), None)
        dropout_module.Dropout.forward = lambda self, x: F.dropout(x, self.p, self.training)
        layer = encoder_module.TransformerLayer
        layer.forward = torch.compile(layer.forward, dynamic=True)


def worker(args) -> None:
    import torch

    sys.path.insert(0, str(REPO / "bench"))
    import train_speed

    torch.set_num_threads(args.threads)
    mrpc_config = train_speed.mrpc_config

    def patched(data_dir):
        config = mrpc_config(data_dir)
        apply_variant(args.variant, config)
        return config

    train_speed.mrpc_config = patched
    figures = train_speed.bertfit_worker(args)
    figures["variant"] = args.variant
    Path(args.timing_json).write_text(json.dumps(figures))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "glue"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--steps", type=int, default=18)
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--output", default=str(REPO / "bench" / "results" / "train_levers.json"))
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--timing-json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        worker(args)
        return 0
    variants = ["all"] + [v for v in args.variants.split(",") if v != "all"]
    unknown = {v for v in variants if v not in VARIANTS and not v.startswith(NUMBERED_VARIANTS)}
    if unknown:
        choices = ", ".join([*VARIANTS, *(prefix + "N" for prefix in NUMBERED_VARIANTS)])
        parser.error(f"unknown variants {sorted(unknown)}; choose from {choices}")
    runs: dict[str, list[float]] = {variant: [] for variant in variants}
    for rep in range(args.reps):
        for variant in variants:
            with tempfile.TemporaryDirectory() as scratch:
                out = Path(scratch) / "figures.json"
                subprocess.run(
                    [sys.executable, __file__, "--variant", variant, "--timing-json", str(out),
                     "--data-dir", args.data_dir, "--threads", str(args.threads),
                     "--steps", str(args.steps), "--warmup-steps", str(args.warmup_steps)],
                    check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                figures = json.loads(out.read_text())
            speed = figures["examples"] / figures["seconds"]
            runs[variant].append(speed)
            print(f"  rep {rep + 1}: {variant:16s} {speed:6.1f} ex/s", flush=True)
    summary = {}
    for variant, speeds in runs.items():
        ratios = [mine / theirs for mine, theirs in zip(runs["all"], speeds)]
        summary[variant] = {
            "examples_per_second_median": statistics.median(speeds),
            "examples_per_second": speeds,
            "defaults_speed_over_it_median": statistics.median(ratios),
        }
        print(f"{variant:16s} {statistics.median(speeds):6.1f} ex/s   "
              f"defaults are {statistics.median(ratios):.2f}x")  # fmt: skip
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(
        json.dumps({"threads": args.threads, "variants": summary}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
