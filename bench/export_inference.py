"""Exported-model parity, accuracy and inference speed, side by side with the usual alternatives.

One run, one fine-tuned model (``RUN/model``), the MRPC dev set, the same thread counts:

1. exports the run to ONNX fp32 and int8, plain and with ``--transformer-fusions``
   (``bertfit export``), unless already exported;
2. parity: max |logit difference| of each export against the PyTorch model on every dev pair,
   and the dev accuracy of the PyTorch model, the fp32 and the int8 export;
3. speed of bertfit's ONNX fp32 and int8 predictors and of its PyTorch path
   (``TextClassifier``), in this environment, and of Hugging Face's pipeline (fp32, bf16
   autocast) and Optimum's ONNX Runtime models (fp32, int8) in the peers' environment
   (``bench/peers_inference.py`` under ``--peer-python``), with the same protocol:
   examples/s at batch 32 over the dev set with ``--threads`` threads (median of 3 passes after
   a warm-up), and single-pair latency p50/p99 over every dev pair with ``--latency-threads``.
   Every system runs in a fresh process of its own, one after the other, so that no other
   model's weights, thread pool or caches share it.

Prints a table and writes ``bench/results/export_inference.json``::

    .venv/bin/python bench/export_inference.py --run runs/mrpc --data-dir ../shared/data/glue

The peers' environment, once (Optimum pins transformers 4.57; torch is the local CPU wheel)::

    python3 -m venv .peers/optimum
    .peers/optimum/bin/pip install torch==2.13.0
    .peers/optimum/bin/pip install optimum-onnx onnxruntime
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers_inference import latencies, timed_passes  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def load_dev(data_dir: Path):
    from bertfit.data.readers import read_glue_split
    from bertfit.data.tasks import MRPC

    root = data_dir / "MRPC" if (data_dir / "MRPC").is_dir() else data_dir
    return read_glue_split(root / "dev.tsv", MRPC, "dev")


#: Exports compared: name -> (quantize, transformer_fusions). The default export is the plain
#: graph (ONNX Runtime fuses at load); "-fused" adds onnxruntime.transformers' fusions.
VARIANTS = {
    "fp32": (None, False),
    "int8": ("int8", False),
    "fp32-fused": (None, True),
    "int8-fused": ("int8", True),
}


#: Hugging Face's pipeline and Optimum's ONNX Runtime models, each measured in a fresh process.
PEER_SYSTEMS = ("pipeline-fp32", "pipeline-bf16", "optimum-fp32", "optimum-int8")


def ensure_exports(run: Path, work: Path, variants=tuple(VARIANTS)) -> dict[str, Path]:
    """The run exported in each of ``variants`` (names of VARIANTS) as ``work/bertfit-NAME``
    (reused when already written); :func:`measure_in_fresh_process` measures them."""
    from bertfit.export.export import export_classifier

    exports = {}
    for name in variants:
        quantize, fusions = VARIANTS[name]
        directory = work / f"bertfit-{name}"
        if not (directory / "manifest.json").is_file():
            start = time.perf_counter()
            result = export_classifier(
                run, directory, quantize=quantize, transformer_fusions=fusions, overwrite=True
            )
            print(f"exported {name} in {time.perf_counter() - start:.1f}s: {result.check}")
        exports[name] = directory
    return exports


def parity(run: Path, exports: dict[str, Path], dev) -> tuple[dict, object]:
    """Max |logit diff| of each export vs PyTorch on all of dev, and each one's accuracy."""
    from bertfit.export.runtime import load_exported
    from bertfit.inference import TextClassifier
    from bertfit.paths import find_model_dir

    classifier = TextClassifier.from_pretrained(find_model_dir(run))
    labels = np.asarray(dev.labels)
    reference = classifier.logits(dev.columns)
    report = {
        "examples": len(labels),
        "pytorch_accuracy": float((reference.argmax(-1) == labels).mean()),
    }
    for precision, directory in exports.items():
        logits = load_exported(directory).logits(dev.columns)
        report[f"{precision}_max_abs_diff"] = float(np.abs(logits - reference).max())
        report[f"{precision}_accuracy"] = float((logits.argmax(-1) == labels).mean())
        report[f"{precision}_same_class"] = float(
            (logits.argmax(-1) == reference.argmax(-1)).mean()
        )
    return report, classifier


def measure(predict_batch, predict_one, dev, labels) -> dict:
    """The shared protocol: throughput over dev at batch 32, then single-pair latencies."""
    class_ids = predict_batch()
    seconds = timed_passes(predict_batch)
    singles = list(zip(*dev.columns))
    latency = predict_one(singles)
    return {
        "examples_per_s": len(labels) / seconds,
        **latency,
        "accuracy": float((np.asarray(class_ids) == labels).mean()),
    }


def measure_bertfit_system(system: str, args, dev) -> dict:
    """One bertfit system (``bertfit-onnx-VARIANT`` or ``bertfit-pytorch-fp32``) measured in this
    process, which a worker starts fresh for it."""
    labels = np.asarray(dev.labels)
    columns = {"sentence1": dev.columns[0], "sentence2": dev.columns[1]}
    if system.startswith("bertfit-onnx-"):
        from bertfit.export.runtime import load_exported

        directory = Path(args.work) / f"bertfit-{system.removeprefix('bertfit-onnx-')}"
        batch = load_exported(directory, batch_size=32, threads=args.threads)
        one = load_exported(directory, threads=args.latency_threads)
        return measure(
            lambda: batch(columns)["class_id"],
            lambda pairs: latencies(
                lambda p: one({"sentence1": [p[0]], "sentence2": [p[1]]}), pairs
            ),
            dev,
            labels,
        )
    import torch

    from bertfit.inference import TextClassifier
    from bertfit.paths import find_model_dir

    classifier = TextClassifier.from_pretrained(find_model_dir(Path(args.run)))
    torch.set_num_threads(args.threads)

    def torch_batch():
        return classifier.logits(dev.columns, batch_size=32).argmax(-1)

    def torch_latency(pairs):
        torch.set_num_threads(args.latency_threads)
        return latencies(lambda p: classifier.logits([[p[0]], [p[1]]]), pairs)

    return measure(torch_batch, torch_latency, dev, labels)


def measure_in_fresh_process(args, system: str) -> dict:
    """Run ``--measure SYSTEM`` in a new interpreter: no other model, thread pool or cache
    state of an earlier system shares the process with it."""
    command = [
        sys.executable, __file__, "--measure", system, "--run", args.run,
        "--data-dir", args.data_dir, "--work", args.work, "--threads", str(args.threads),
        "--latency-threads", str(args.latency_threads),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise SystemExit(f"{system} failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure_peer(args, run: Path, dev, work: Path, system: str) -> dict:
    """One peer system, measured by ``bench/peers_inference.py`` in the peers' environment."""
    from bertfit.paths import find_model_dir

    pairs_file = work / "mrpc-dev-pairs.json"
    pairs_file.write_text(json.dumps({"pairs": list(zip(*dev.columns)), "labels": dev.labels}))
    command = [
        args.peer_python, str(REPO / "bench" / "peers_inference.py"),
        "--model", str(find_model_dir(run)), "--pairs", str(pairs_file), "--work", str(work),
        "--threads", str(args.threads), "--latency-threads", str(args.latency_threads),
        "--systems", system,
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "true"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
    if result.returncode != 0:
        raise SystemExit(f"peers failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def machine_and_load() -> dict:
    """The processor, its count and the load average, for a benchmark's JSON record."""
    return {
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
        },
        "load_average": os.getloadavg(),
    }


def write_record(output: Path, record: dict) -> None:
    """Write a benchmark's JSON record (making its folder) and say where."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(record, indent=2))
    print(f"wrote {output}")


def print_table(results: dict) -> None:
    print(f"\n{'system':24} {'examples/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'accuracy':>9}")
    for name, row in results.items():
        print(
            f"{name:24} {row['examples_per_s']:10.1f} {row['p50_ms']:8.2f} {row['p99_ms']:8.2f} "
            f"{row['accuracy']:9.4f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default="runs/mrpc", help="fine-tuned run directory")
    parser.add_argument("--data-dir", default="../shared/data/glue", help="GLUE root or MRPC dir")
    parser.add_argument("--work", default="bench/results/exports", help="where exports go")
    parser.add_argument("--threads", type=int, default=2, help="threads for throughput")
    parser.add_argument("--latency-threads", type=int, default=1, help="threads for latency")
    parser.add_argument("--peer-python", default=".peers/optimum/bin/python",
                        help="python of the peers' environment ('' to skip the peers)")  # fmt: skip
    parser.add_argument("--output", default="bench/results/export_inference.json")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # worker: one bertfit system
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    run, work = Path(args.run), Path(args.work)
    dev = load_dev(Path(args.data_dir))
    if args.measure:
        print(json.dumps(measure_bertfit_system(args.measure, args, dev)))
        return
    work.mkdir(parents=True, exist_ok=True)
    exports = ensure_exports(run, work)
    report, _ = parity(run, exports, dev)
    print(json.dumps(report, indent=2))
    results = {}
    for system in [f"bertfit-onnx-{name}" for name in VARIANTS] + ["bertfit-pytorch-fp32"]:
        results[system] = measure_in_fresh_process(args, system)
        print(f"{system}: {results[system]}", flush=True)
    peers = {"results": {}, "versions": {}}
    if args.peer_python:
        for system in PEER_SYSTEMS:
            measured = measure_peer(args, run, dev, work, system)
            results.update(measured["results"])
            peers["versions"] = measured["versions"]
            print(f"{system}: {measured['results'][system]}", flush=True)
    print_table(results)
    import onnxruntime
    import torch

    record = {
        "parity": report,
        "results": results,
        "threads": args.threads,
        "latency_threads": args.latency_threads,
        "versions": {
            "bertfit_torch": torch.__version__,
            "bertfit_onnxruntime": onnxruntime.__version__,
            "peers": peers["versions"],
        },  # fmt: skip
        **machine_and_load(),
    }
    write_record(Path(args.output), record)


if __name__ == "__main__":
    main()
