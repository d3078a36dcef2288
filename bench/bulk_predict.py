"""Bulk prediction (``bertfit predict SOURCE --input IN --output OUT``): rows/s and peak memory.

Generates the input once: MRPC train pairs resampled (with replacement, seeded) into a Parquet
file with an ``id`` column, ``--rows`` rows. Then, each in a fresh process of its own so that
its peak RSS (``VmHWM``) is its own, on the same rows and with ``--threads`` ONNX Runtime
threads:

- ``read``: the chunk reader alone (``bertfit.bulk.sources.read_chunks``), what reading costs;
- ``in_memory``: the exported predictor's own batched rate, every text held in memory at once;
- ``bulk``: the streaming path end to end (read, predict, commit parts, join the output).

Without ``--source`` it exports the packaged all-MiniLM-L6-v2 with a fresh two-class head
(int8 unless ``--precision fp32``; the weights' values do not change the speed) into
``bench/results/bulk/``. Prints the results as JSON and writes ``bench/results/bulk_predict.json``::

    .venv/bin/python bench/bulk_predict.py --rows 200000 --threads 2
    .venv/bin/python bench/bulk_predict.py --rows 2000            # a short check that it runs
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

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
WORK = RESULTS / "bulk"


def memory_mib() -> float:
    """Peak resident memory of this process (MiB), from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_export(precision: str) -> Path:
    """An ONNX export of the packaged model with a fresh two-class head (made once)."""
    directory = WORK / f"minilm-{precision}"
    if (directory / "manifest.json").is_file():
        return directory
    from bertfit.data.tasks import MRPC
    from bertfit.export.export import export_classifier
    from bertfit.inference import ClassifierInfo, TextClassifier
    from bertfit.model.hf_classifier import classifier_from_pretrained
    from bertfit.model.presets import default_model_dir
    from bertfit.text.tokenizer import WordpieceTokenizer

    model_dir = default_model_dir()
    model, _ = classifier_from_pretrained(model_dir, 2)
    info = ClassifierInfo("mrpc", list(MRPC.label_names), 128, True, list(MRPC.input_names))
    tokenizer = WordpieceTokenizer(model_dir / "vocab.txt", lower_case=True)
    classifier = TextClassifier(model, tokenizer, info)
    export_classifier(
        classifier, directory, quantize=None if precision == "fp32" else precision, overwrite=True
    )
    return directory


def make_input(data_dir: Path, rows: int, seed: int) -> Path:
    """MRPC train pairs resampled into ``rows`` rows of Parquet with an id (made once)."""
    path = WORK / f"mrpc-{rows}-{seed}.parquet"
    if path.is_file():
        return path
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bertfit.data.readers import read_glue_split
    from bertfit.data.tasks import MRPC

    train = read_glue_split(data_dir / "MRPC" / "train.tsv", MRPC, "train")
    picks = np.random.default_rng(seed).integers(0, len(train), size=rows)
    first, second = (np.asarray(column, dtype=object)[picks] for column in train.columns)
    table = pa.table(
        {"id": np.arange(rows, dtype=np.int64), "sentence1": first, "sentence2": second}
    )
    temporary = path.with_name(path.name + ".tmp")
    pq.write_table(table, temporary, row_group_size=65536)
    os.replace(temporary, path)
    return path


def child(mode: str, source: str, input_path: str, args: argparse.Namespace) -> dict:
    """One measurement in this process; returns its figures."""
    from bertfit.bulk.engine import BulkOptions, predict_bulk
    from bertfit.bulk.model import load_model
    from bertfit.bulk.sources import Layout, input_files, read_chunks, resolve_keep

    files = input_files(input_path)
    start = time.perf_counter()
    if mode == "read":
        layout = resolve_keep(files, Layout(("sentence1", "sentence2")), None)
        rows = sum(len(chunk) for chunk in read_chunks(files, layout, args.chunk_rows))
    elif mode == "in_memory":
        import pyarrow.parquet as pq

        model = load_model(source, args.batch_size, args.threads)
        start = time.perf_counter()  # the model's load is not the predictor's rate
        table = pq.read_table(files[0], columns=["sentence1", "sentence2"])
        columns = [table.column(name).to_pylist() for name in ("sentence1", "sentence2")]
        rows = len(model.logits(columns))
    else:
        model = load_model(source, args.batch_size, args.threads)
        start = time.perf_counter()
        output = WORK / f"out-{Path(input_path).stem}.{args.output_format}"
        options = BulkOptions(
            input_path, str(output), chunk_rows=args.chunk_rows, batch_size=args.batch_size,
            overwrite=True,
        )  # fmt: skip
        rows = predict_bulk(model, options, progress=False).rows
    seconds = time.perf_counter() - start
    return {
        "mode": mode,
        "rows": rows,
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds, 1),
        "peak_rss_mib": round(memory_mib(), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", help="exported model (default: MiniLM, fresh head)")
    parser.add_argument("--precision", default="int8", choices=["int8", "fp32"])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data" / "glue")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--chunk-rows", type=int, default=10_000)
    parser.add_argument("--output-format", default="parquet", choices=["parquet", "jsonl", "csv"])
    parser.add_argument("--modes", default="read,in_memory,bulk")
    parser.add_argument(
        "--child", nargs=3, metavar=("MODE", "SOURCE", "INPUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args)))
        return 0
    WORK.mkdir(parents=True, exist_ok=True)
    source = args.source or str(make_export(args.precision))
    input_path = make_input(args.data_dir, args.rows, args.seed)
    results = []
    for mode in args.modes.split(","):
        command = [
            sys.executable,
            __file__,
            *sys.argv[1:],
            "--child",
            mode,
            source,
            str(input_path),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.splitlines()[-1]))
    rates = {r["mode"]: r["rows_per_s"] for r in results}
    report = {
        "source": source, "input": str(input_path), "rows": args.rows, "threads": args.threads,
        "batch_size": args.batch_size, "chunk_rows": args.chunk_rows,
        "output_format": args.output_format, "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "results": results,
    }  # fmt: skip
    if "bulk" in rates and "in_memory" in rates:
        report["bulk_over_in_memory"] = round(rates["bulk"] / rates["in_memory"], 3)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bulk_predict.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
