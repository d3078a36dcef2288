"""Training speed side by side: bertfit against Hugging Face transformers at its default and best.

Every system fine-tunes the packaged all-MiniLM-L6-v2 on GLUE MRPC train (batch 32, max length
128, AdamW, warmup + linear decay) in its own process, on the same machine with the same thread
count. Systems run alternately (A B C D, A B C D, ...) for ``--reps`` repetitions; each run
times ``--steps`` optimizer steps after ``--warmup-steps`` untimed ones, counting every second
between the end of the last warm-up step and the end of the last timed one (data loading,
collation and logging included).

* ``bertfit``: its trainer with the defaults of ``bertfit train --task mrpc``.
* ``hf-default``, ``hf-grouped``, ``hf-grouped-bf16``: ``bench/peers/hf_mrpc.py``, transformers'
  own ``Trainer``: defaults; ``group_by_length``; and grouped with ``bf16=True``.
* ``hf-fixed-128`` (2 threads only): every pair padded to 128 tokens, standing in for the
  reference tutorial's TensorFlow Model Garden pipeline (same transformers code, padded input).

Also, in the same run: the machine's ceiling (only the linear layers' forward and backward for
a median batch of real tokens, fp32 and bf16), every system's share of it; inference over MRPC
dev (bertfit's evaluation path against transformers' model on length-sorted batches, fp32 and
bf16 autocast); and with ``--whole-process``, the wall time and peak RSS of the whole command
``bertfit train --task mrpc --max-steps 120`` against the transformers script doing the same
job (tokenize, load, 120 steps, evaluate on dev, save) in its default and best settings, with
the median seconds of each of bertfit's phases (from each run's ``timings.json``).

    .venv/bin/python bench/train_speed.py --threads 2,1 --reps 3 [--whole-process]
    .venv/bin/python bench/train_speed.py --threads 2 --reps 3 --eval-only

Prints tables and writes everything to ``bench/results/train_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HF_SCRIPT = REPO / "bench" / "peers" / "hf_mrpc.py"
HF_SETTINGS = ("default", "grouped", "grouped-bf16", "fixed-128")


# -- workers (each runs in its own process) ------------------------------------------------------


def mrpc_config(data_dir: str | None):
    """The run config of ``bertfit train --task mrpc --data-dir DATA_DIR``."""
    from bertfit.train.config_file import load_run_config

    config = load_run_config(None, [("task", "mrpc")])
    config.data_dir = data_dir
    return config


def mrpc_trainer(data_dir: str, max_steps: int | None = None):
    """bertfit's trainer as ``bertfit train --task mrpc`` sets it up (no run directory), with
    MRPC's train examples and dev sets."""
    from bertfit.train.run import build_classifier, load_task_data
    from bertfit.train.trainer import Trainer

    config = mrpc_config(data_dir)
    config.trainer.max_steps = max_steps
    task, train, dev = load_task_data(config)
    classifier = build_classifier(config, task)
    trainer = Trainer(classifier, task, config.trainer, config.optimizer, None, progress=False)
    return trainer, train, dev


def bertfit_worker(args) -> dict:
    """Time ``args.steps`` steps of bertfit's own trainer with ``bertfit train``'s defaults."""
    import numpy as np

    from bertfit.text.ragged import example_lengths

    trainer, train_examples, _ = mrpc_trainer(args.data_dir, max_steps=args.steps)
    train = trainer.encode(train_examples)
    lengths = np.asarray(example_lengths(train.inputs))
    ends, batches = [], []
    train_step = trainer._train_step

    def timed_step(batch, *rest, **named):
        result = train_step(batch, *rest, **named)
        ends.append(time.perf_counter())
        batches.append((len(batch), int(lengths[batch].sum())))
        return result

    trainer._train_step = timed_step
    trainer.fit(train, None)
    timed = batches[args.warmup_steps :]
    return {
        "system": "bertfit",
        "seconds": ends[-1] - ends[args.warmup_steps - 1],
        "steps": len(timed),
        "examples": sum(b[0] for b in timed),
        "real_tokens": sum(b[1] for b in timed),
        # The linear layers see real tokens only; attention alone pads to each batch's longest.
        "padded_tokens": sum(b[1] for b in timed),
        "precision": trainer.precision,
    }


def ceiling_worker(args) -> dict:
    """Linear layers only, forward and backward, for a batch of ``args.tokens`` real tokens."""
    import torch
    import torch.nn.functional as F

    hidden, inner, layers = 384, 1536, 6  # all-MiniLM-L6-v2
    shapes = [(3 * hidden, hidden), (hidden, hidden), (inner, hidden), (hidden, inner)]
    result = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        weights = [
            torch.randn(shape, dtype=dtype, requires_grad=True)
            for _ in range(layers)
            for shape in shapes
        ]
        inputs = {
            width: torch.randn(args.tokens, width, dtype=dtype, requires_grad=True)
            for width in (hidden, inner)
        }

        def step(weights=weights, inputs=inputs):
            outputs = [F.linear(inputs[w.shape[1]], w) for w in weights]
            torch.autograd.backward(outputs, [torch.ones_like(o) for o in outputs])

        for _ in range(2):
            step()
        times = []
        for _ in range(args.steps):
            started = time.perf_counter()
            step()
            times.append(time.perf_counter() - started)
        seconds = statistics.median(times)
        flops = 3 * 2 * args.tokens * sum(w.numel() for w in weights)
        result[name] = {
            "seconds_per_batch": seconds,
            "examples_per_second": 32 / seconds,
            "gflops": flops / seconds / 1e9,
        }
    return result


def bertfit_eval_worker(args) -> dict:
    """bertfit's evaluation path (padding-free, length-sorted) over MRPC dev."""
    trainer, _, dev = mrpc_trainer(args.data_dir)
    data = trainer.encode(dev["dev"])
    trainer._predict(data, False)  # warm-up pass
    started = time.perf_counter()
    for _ in range(args.steps):
        trainer._predict(data, False)
    seconds = time.perf_counter() - started
    return {"system": "bertfit-eval", "examples": len(data) * args.steps, "seconds": seconds}


def hf_eval_worker(args, bf16: bool) -> dict:
    """transformers' model over MRPC dev on length-sorted batches of 64 (its best for inference)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    sys.path.insert(0, str(HF_SCRIPT.parent))
    from hf_mrpc import read_mrpc

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=2).eval()
    first, second, _ = read_mrpc(Path(args.data_dir) / "MRPC" / "dev.tsv")
    encoded = tokenizer(first, second, truncation=True, max_length=128)
    order = sorted(range(len(first)), key=lambda i: -len(encoded["input_ids"][i]))
    batches = [order[i : i + 64] for i in range(0, len(order), 64)]

    def one_pass():
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            for batch in batches:
                features = [{k: encoded[k][i] for k in encoded} for i in batch]
                inputs = tokenizer.pad(features, return_tensors="pt")
                model(**inputs).logits.float()

    one_pass()
    started = time.perf_counter()
    for _ in range(args.steps):
        one_pass()
    seconds = time.perf_counter() - started
    name = "hf-eval-sorted-bf16" if bf16 else "hf-eval-sorted"
    return {"system": name, "examples": len(first) * args.steps, "seconds": seconds}


def run_worker(args) -> int:
    import torch

    torch.set_num_threads(args.threads)
    if args.worker == "bertfit":
        figures = bertfit_worker(args)
    elif args.worker == "ceiling":
        figures = ceiling_worker(args)
    elif args.worker == "bertfit-eval":
        figures = bertfit_eval_worker(args)
    else:
        figures = hf_eval_worker(args, bf16=args.worker == "hf-eval-bf16")
    figures["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures["threads"] = torch.get_num_threads()
    Path(args.timing_json).write_text(json.dumps(figures))
    return 0


# -- the parent: alternate the systems, collect, compare ----------------------------------------


def run_child(command: list[str], threads: int) -> dict:
    """Run one measurement process; return the figures it wrote."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "figures.json"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
        subprocess.run(
            [*command, "--timing-json", str(out)],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return json.loads(out.read_text())


def system_command(system: str, args, threads: int) -> list[str]:
    common = ["--threads", str(threads), "--steps", str(args.steps)]
    if system == "bertfit":
        return [
            sys.executable, __file__, "--worker", "bertfit", "--data-dir", args.data_dir,
            "--warmup-steps", str(args.warmup_steps), *common,
        ]  # fmt: skip
    return [
        sys.executable, str(HF_SCRIPT), "--setting", system.removeprefix("hf-"),
        "--model", args.model, "--data-dir", str(Path(args.data_dir) / "MRPC"),
        "--warmup-steps", str(args.warmup_steps), *common,
    ]  # fmt: skip


def train_systems(threads: int) -> list[str]:
    systems = ["bertfit", "hf-default", "hf-grouped", "hf-grouped-bf16"]
    return systems + ["hf-fixed-128"] if threads > 1 else systems


def median_batch_tokens(args) -> int:
    """Real tokens in a median batch of 32 MRPC training pairs (the ceiling's batch)."""
    from bertfit.text.ragged import example_lengths

    trainer, train, _ = mrpc_trainer(args.data_dir)
    lengths = example_lengths(trainer.encode(train).inputs)
    return round(float(statistics.mean(lengths)) * 32)


def measure_threads(args, threads: int, tokens: int) -> dict:
    """All systems at one thread count, alternated over repetitions."""
    me = [sys.executable, __file__, "--data-dir", args.data_dir, "--model", args.model]
    ceiling = run_child([*me, "--worker", "ceiling", "--tokens", str(tokens), "--threads",
                         str(threads), "--steps", "10"], threads)  # fmt: skip
    runs: dict[str, list[dict]] = {name: [] for name in train_systems(threads)}
    for rep in range(args.reps):
        for system in runs:
            figures = run_child(system_command(system, args, threads), threads)
            figures["examples_per_second"] = figures["examples"] / figures["seconds"]
            runs[system].append(figures)
            print(f"  {threads} threads, rep {rep + 1}: {system:16s} "
                  f"{figures['examples_per_second']:6.1f} ex/s", flush=True)  # fmt: skip
    return {"ceiling": ceiling, "train": runs, "inference": measure_inference(args, threads)}


def measure_inference(args, threads: int, passes: int = 2) -> dict[str, list[dict]]:
    """bertfit's evaluation against transformers' (fp32 and bf16) over MRPC dev, alternated;
    each run times ``passes`` passes after a warm-up pass."""
    me = [sys.executable, __file__, "--data-dir", args.data_dir, "--model", args.model]
    inference: dict[str, list[dict]] = {"bertfit-eval": [], "hf-eval": [], "hf-eval-bf16": []}
    for _ in range(args.reps):
        for worker in inference:
            figures = run_child([*me, "--worker", worker, "--threads", str(threads),
                                 "--steps", str(passes)], threads)  # fmt: skip
            figures["examples_per_second"] = figures["examples"] / figures["seconds"]
            inference[worker].append(figures)
    return inference


def summarize(
    runs: dict[str, list[dict]], ceiling: dict | None, reference: str, pair_tokens: float = 0
) -> list[dict]:
    """Per system: median/min/max examples/s, pairwise ratios of the reference to it, and more.

    The systems order their batches differently, so a window of steps holds longer pairs for
    one than for another. Real tokens/s does not depend on that; ``pair_tokens`` (the mean real
    tokens of an MRPC pair) turns it into the examples/s of a whole epoch, and the ratio by
    tokens compares the systems on the same footing. Both ratios are reported.
    """
    rows = []
    for system, figures in runs.items():
        speeds = [f["examples_per_second"] for f in figures]
        row = {
            "system": system,
            "examples_per_second": _spread(speeds),
            "ratio_of_bertfit_to_it": _spread(_ratios(runs[reference], figures, "examples")),
            "peak_rss_mib": max(f["peak_rss_mib"] for f in figures),
        }
        if "real_tokens" in figures[0]:
            tokens = [f["real_tokens"] / f["seconds"] for f in figures]
            row["real_tokens_per_second"] = statistics.median(tokens)
            row["epoch_examples_per_second"] = row["real_tokens_per_second"] / pair_tokens
            row["ratio_by_tokens"] = _spread(_ratios(runs[reference], figures, "real_tokens"))
            padded = sum(f["padded_tokens"] for f in figures)
            row["padding_percent"] = 100 * (padded / sum(f["real_tokens"] for f in figures) - 1)
            precision = figures[0]["precision"]
            row["precision"] = precision
            bound = ceiling[precision]["examples_per_second"]
            row["fraction_of_ceiling"] = row["epoch_examples_per_second"] / bound
        rows.append(row)
    return rows


def _ratios(mine: list[dict], theirs: list[dict], amount: str) -> list[float]:
    """Run by run (same repetition): my ``amount`` per second over theirs."""
    return [(a[amount] / a["seconds"]) / (b[amount] / b["seconds"]) for a, b in zip(mine, theirs)]


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def print_table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    training = "real_tokens_per_second" in rows[0]
    header = f"{'system':18s} {'ex/s median (min-max)':>24s} {'bertfit is':>10s}"
    if training:
        header += f" {'tokens/s':>9s} {'epoch ex/s':>10s} {'by tokens':>9s} {'padding':>8s}"
        header += f" {'ceiling':>8s}"
    print(header + f" {'RSS MiB':>8s}")
    for row in rows:
        speed, ratio = row["examples_per_second"], row["ratio_of_bertfit_to_it"]["median"]
        line = (
            f"{row['system']:18s} {speed['median']:8.1f} ({speed['min']:.1f}-{speed['max']:.1f})"
            f"{'':>4s} {ratio:9.2f}x"
        )
        if training:
            line += (
                f" {row['real_tokens_per_second']:9.0f} {row['epoch_examples_per_second']:10.1f}"
                f" {row['ratio_by_tokens']['median']:8.2f}x {row['padding_percent']:7.1f}%"
                f" {100 * row['fraction_of_ceiling']:7.0f}%"
            )
        print(line + f" {row['peak_rss_mib']:8.0f}")


def print_report(report: dict) -> None:
    """Every table of a report (also ``--report FILE``, to reprint a saved run)."""
    for threads, measured in report.get("inference_by_threads", {}).items():
        rows = summarize(measured, None, "bertfit-eval")
        report.setdefault("inference_summary", {})[threads] = rows
        print_table(f"inference over MRPC dev, {threads} threads", rows)
    for threads, measured in report.get("by_threads", {}).items():
        pair_tokens = report["ceiling_batch_tokens"] / 32
        ceiling = measured["ceiling"]
        train = summarize(measured["train"], ceiling, "bertfit", pair_tokens)
        inference = summarize(measured["inference"], None, "bertfit-eval")
        measured["train_summary"], measured["inference_summary"] = train, inference
        print_table(
            f"training, {threads} threads (ceiling, the linear layers alone: "
            f"{ceiling['fp32']['examples_per_second']:.0f} ex/s fp32, "
            f"{ceiling['bf16']['examples_per_second']:.0f} ex/s bf16)",
            train,
        )
        print_table(f"inference over MRPC dev, {threads} threads", inference)
    for system, row in report.get("whole_process", {}).items():
        print(
            f"whole process {system:16s} {row['seconds_median']:6.1f} s median, its time is "
            f"{row['its_time_over_bertfits_median']:.2f}x bertfit's, "
            f"peak RSS {row['peak_rss_mib']:.0f} MiB"
        )
    phases = report.get("whole_process", {}).get("bertfit", {}).get("phases", {})
    if phases:
        print("where bertfit's whole process spends its time (median seconds per phase):")
        for name, seconds in phases.items():
            print(f"  {name:20s} {seconds:6.1f}")


# -- whole process ------------------------------------------------------------------------------


def phase_medians(runs: list[dict]) -> dict[str, float]:
    """Median seconds of each phase over bertfit's whole-process runs, and what the phases
    leave unaccounted (the whole command's own clock against their sum)."""
    names = list(dict.fromkeys(name for run in runs for name in run["phases"]))

    def seconds(run: dict, name: str) -> float:
        return run["phases"].get(name, {"seconds": 0.0})["seconds"]

    medians = {name: statistics.median(seconds(run, name) for run in runs) for name in names}
    totals = [run["total_seconds"] for run in runs if run["total_seconds"] is not None]
    if totals:
        medians["(not in a phase)"] = statistics.median(totals) - sum(medians.values())
    return medians


def timed_process(command: list[str], threads: int) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one whole command."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{command[:4]}... failed")
    return seconds, usage.ru_maxrss / 1024


def whole_process(args, hf_best: str, threads: int = 2) -> dict:
    """``bertfit train --task mrpc --max-steps 120`` against transformers doing the same job."""
    bertfit_cli = str(Path(sys.executable).with_name("bertfit"))
    results: dict[str, list[tuple[float, float]]] = {"bertfit": [], "hf-default": [], hf_best: []}
    phases: list[dict] = []  # each bertfit run's RUN/timings.json: where its seconds went
    for rep in range(args.reps):
        for system in results:
            with tempfile.TemporaryDirectory() as scratch:
                if system == "bertfit":
                    command = [
                        bertfit_cli, "train", "--task", "mrpc", "--max-steps", "120",
                        "--data-dir", args.data_dir, "--output", scratch, "--quiet",
                    ]  # fmt: skip
                else:
                    command = [sys.executable, str(HF_SCRIPT), "--whole", "--steps", "120",
                               "--setting", system.removeprefix("hf-"), "--model", args.model,
                               "--data-dir", str(Path(args.data_dir) / "MRPC"),
                               "--threads", str(threads)]  # fmt: skip
                results[system].append(timed_process(command, threads))
                if system == "bertfit":
                    phases.append(json.loads((Path(scratch) / "timings.json").read_text()))
            print(f"  whole process, rep {rep + 1}: {system:16s} "
                  f"{results[system][-1][0]:6.1f} s", flush=True)  # fmt: skip
    summary = {}
    for system, figures in results.items():
        ratios = [theirs[0] / mine[0] for mine, theirs in zip(results["bertfit"], figures)]
        summary[system] = {
            "seconds_median": statistics.median(f[0] for f in figures),
            "seconds": [f[0] for f in figures],
            "peak_rss_mib": max(f[1] for f in figures),
            "its_time_over_bertfits_median": statistics.median(ratios),
        }
    summary["bertfit"]["phases"] = phase_medians(phases)
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "glue"))
    parser.add_argument("--model", default=None, help="all-MiniLM-L6-v2 directory (packaged)")
    parser.add_argument("--threads", default="2,1", help="thread counts, e.g. 2,1")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=18, help="steps per run, warm-up included")
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--whole-process", action="store_true")
    parser.add_argument(
        "--whole-process-only",
        metavar="HF_BEST",
        help="time only the whole processes, with this Hugging Face setting as its best "
        "(hf-grouped or hf-grouped-bf16, as a full run found); writes --output",
    )
    parser.add_argument(
        "--eval-only",
        action="store_true",
        help="measure only evaluation over MRPC dev (5 passes a run); writes --output",
    )
    parser.add_argument("--report", metavar="JSON", help="reprint the tables of a saved run")
    parser.add_argument("--output", default=str(REPO / "bench" / "results" / "train_speed.json"))
    # Internal: one measurement in this process.
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--timing-json", help=argparse.SUPPRESS)
    parser.add_argument("--tokens", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.report:
        print_report(json.loads(Path(args.report).read_text()))
        return 0
    if args.model is None:
        from bertfit.model.presets import resolve_model_dir

        args.model = str(resolve_model_dir(None))
    if args.worker:
        args.threads = int(args.threads)
        return run_worker(args)

    if args.eval_only:
        report = {"machine": machine_info(), "reps": args.reps, "inference_by_threads": {}}
        for threads in [int(t) for t in args.threads.split(",")]:
            print(f"{threads} threads:", flush=True)
            report["inference_by_threads"][str(threads)] = measure_inference(args, threads, 5)
        print_report(report)
        Path(args.output).write_text(json.dumps(report, indent=2))
        print(f"\nwrote {args.output}")
        return 0
    if args.whole_process_only:
        report = {"whole_process": whole_process(args, args.whole_process_only)}
        print_report(report)
        Path(args.output).write_text(json.dumps(report, indent=2))
        print(f"\nwrote {args.output}")
        return 0
    tokens = median_batch_tokens(args)
    report = {
        "machine": machine_info(),
        "recipe": "all-MiniLM-L6-v2, MRPC train, batch 32, max length 128, AdamW, warmup+decay",
        "timed_steps": args.steps - args.warmup_steps, "warmup_steps": args.warmup_steps,
        "reps": args.reps, "ceiling_batch_tokens": tokens, "by_threads": {},
    }  # fmt: skip
    for threads in [int(t) for t in args.threads.split(",")]:
        print(f"{threads} threads:", flush=True)
        report["by_threads"][str(threads)] = measure_threads(args, threads, tokens)
    if args.whole_process:
        two = report["by_threads"].get("2", next(iter(report["by_threads"].values())))
        speeds = {
            name: statistics.median(f["real_tokens"] / f["seconds"] for f in figures)
            for name, figures in two["train"].items()
        }
        hf_best = max(("hf-grouped", "hf-grouped-bf16"), key=lambda s: speeds[s])
        print(f"whole process (HF best here: {hf_best}):", flush=True)
        report["whole_process"] = whole_process(args, hf_best)
    print_report(report)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.output}")
    return 0


def machine_info() -> dict:
    """The CPU, core count and library versions, for the report."""
    import torch

    return {
        "cpu": _cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__,
        "python": platform.python_version(), "transformers": _version("transformers"),
    }  # fmt: skip


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
