"""Bulk prediction (``bertfit predict SOURCE --input IN --output OUT``): rows/s and peak memory.

Generates the input once: MRPC train pairs resampled (with replacement, seeded) into a Parquet
file with an ``id`` column, ``--rows`` rows, written a row group at a time. Then, each in a fresh
process of its own so that its peak RSS (``VmHWM``) is its own, on the same rows and with
``--threads`` ONNX Runtime threads:

- ``read``: the chunk reader alone (``bertfit.bulk.sources.read_chunks``), what reading costs;
- ``in_memory``: the exported predictor's own batched rate, every text held in memory at once;
- ``bulk``: the streaming path end to end (read, predict, commit parts, join the output).

The model's load is outside the timed span of both model modes. ``--repeat N`` runs every mode
N times, in the given order on even repetitions and in reverse on odd ones (so neither side
always runs on a warmer or cooler machine), and reports each mode's median and the ratio of the
streaming median to the in-memory one.

Without ``--source`` it exports the packaged all-MiniLM-L6-v2 with a fresh two-class head
(int8 unless ``--precision fp32``; the weights' values do not change the speed) into
``bench/results/bulk/``, where the generated inputs are kept too: a second invocation reuses
both. Each finished run is written to ``bench/results/bulk_predict.json`` at once; with
``--resume`` the runs already there (with the same settings) are kept and not run again, so
a stopped invocation goes on::

    .venv/bin/python bench/bulk_predict.py --rows 200000 --threads 2 --repeat 3 --resume
    .venv/bin/python bench/bulk_predict.py --rows 2000            # a short check that it runs

``bench/bulk_runs.py`` measures the ``bertfit predict`` command itself (peak RSS at two sizes,
``kill -9`` and the same command again, Ray against in-process) with these helpers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
WORK = RESULTS / "bulk"
#: Rows per row group of the generated inputs (and per slice drawn while generating them).
ROW_GROUP = 65536


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
    """MRPC train pairs resampled into ``rows`` rows of Parquet with an id (made once).

    Written a row group at a time, so a million rows cost one row group of memory. The draws
    come from one seeded generator in order, so the first N rows of a larger file are the
    N-row file's rows.
    """
    path = WORK / f"mrpc-{rows}-{seed}.parquet"
    if path.is_file():
        return path
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bertfit.data.readers import read_glue_split
    from bertfit.data.tasks import MRPC

    train = read_glue_split(data_dir / "MRPC" / "train.tsv", MRPC, "train")
    first, second = (np.asarray(column, dtype=object) for column in train.columns)
    generator = np.random.default_rng(seed)
    schema = pa.schema([("id", pa.int64()), ("sentence1", pa.string()), ("sentence2", pa.string())])
    WORK.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with pq.ParquetWriter(temporary, schema) as writer:
        for start in range(0, rows, ROW_GROUP):
            count = min(ROW_GROUP, rows - start)
            picks = generator.integers(0, len(first), size=count)
            ids = np.arange(start, start + count, dtype=np.int64)
            writer.write_table(
                pa.table([ids, first[picks], second[picks]], schema=schema),
                row_group_size=ROW_GROUP,
            )
    os.replace(temporary, path)
    return path


def make_shards(path: Path, shards: int) -> Path:
    """``path``'s rows split, in order, into a folder of ``shards`` Parquet files (made once)."""
    import pyarrow.parquet as pq

    folder = path.with_name(f"{path.stem}-{shards}-shards")
    if (folder / "_done").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    parquet = pq.ParquetFile(path)
    per_shard = -(-parquet.metadata.num_rows // shards)
    writer, index, filled = None, 0, 0
    for batch in parquet.iter_batches(batch_size=ROW_GROUP):
        while batch.num_rows:
            if writer is None:
                writer = pq.ParquetWriter(folder / f"part-{index:04d}.parquet", batch.schema)
            piece = batch.slice(0, per_shard - filled)
            writer.write_batch(piece)
            filled += piece.num_rows
            batch = batch.slice(piece.num_rows)
            if filled == per_shard:
                writer.close()
                writer, index, filled = None, index + 1, 0
    if writer is not None:
        writer.close()
    (folder / "_done").write_text("")  # a leading _: input_files skips it
    return folder


class Results:
    """One benchmark's JSON in ``bench/results/``: its settings and each finished run, written
    as soon as the run ends. With ``resume``, the runs of an earlier invocation with the same
    settings are kept (and not run again); otherwise it starts empty."""

    def __init__(self, name: str, settings: dict, resume: bool) -> None:
        self.path = RESULTS / f"{name}.json"
        self.data = {"settings": settings, "machine": machine(), "runs": {}}
        if resume and self.path.is_file():
            before = json.loads(self.path.read_text())
            if before.get("settings") == settings:
                self.data["runs"] = before.get("runs", {})
                done = ", ".join(self.data["runs"]) or "none"
                print(f"resuming {self.path}: done before: {done}", file=sys.stderr)
            else:
                print(f"{self.path}: other settings; starting over", file=sys.stderr)

    @property
    def runs(self) -> dict:
        """The finished runs by name."""
        return self.data["runs"]

    def add(self, key: str, run: dict) -> None:
        """Record one finished run and write the file."""
        self.runs[key] = run
        self.write()

    def write(self, summary: dict | None = None) -> None:
        """Write the file (atomically), with ``summary`` if given."""
        if summary is not None:
            self.data["summary"] = summary
        RESULTS.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps(self.data, indent=2) + "\n")
        os.replace(temporary, self.path)


def machine() -> dict:
    """The processor, its count and the load average when a benchmark started."""
    return {
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": [round(value, 2) for value in os.getloadavg()],
    }


def alternating(names: list[str], repeat: int):
    """``(repetition, name)`` pairs: ``names`` in order on even repetitions, reversed on odd."""
    for rep in range(repeat):
        for name in names if rep % 2 == 0 else names[::-1]:
            yield rep, name


def spread(values: list[float]) -> dict:
    """Median, min, max and count of some measurements."""
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "n": len(values),
    }


def print_table(header: list[str], rows: list[list]) -> None:
    """A Markdown table (ready for docs/performance.md)."""
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |")
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")


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
    parser.add_argument("--repeat", type=int, default=1, help="runs of each mode (alternated)")
    parser.add_argument("--resume", action="store_true", help="keep the runs already recorded")
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
    settings = {
        "source": source, "input": str(input_path), "rows": args.rows, "threads": args.threads,
        "batch_size": args.batch_size, "chunk_rows": args.chunk_rows,
        "output_format": args.output_format,
    }  # fmt: skip
    results = Results("bulk_predict", settings, args.resume)
    modes = args.modes.split(",")
    for rep, mode in alternating(modes, args.repeat):
        key = f"{mode}#{rep}"
        if key in results.runs:
            continue
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
        run = json.loads(done.stdout.splitlines()[-1])
        results.add(key, run)
        print(f"{key}: {run['rows_per_s']} rows/s, {run['peak_rss_mib']} MiB", file=sys.stderr)
    summary = {}
    # every mode recorded, so that invocations with one mode each (--resume) add up
    for mode in dict.fromkeys([*modes, *(key.split("#")[0] for key in results.runs)]):
        runs = [run for key, run in results.runs.items() if key.split("#")[0] == mode]
        summary[mode] = {
            "rows_per_s": spread([run["rows_per_s"] for run in runs]),
            "peak_rss_mib": spread([run["peak_rss_mib"] for run in runs]),
        }
    if "bulk" in summary and "in_memory" in summary:
        summary["bulk_over_in_memory"] = round(
            summary["bulk"]["rows_per_s"]["median"] / summary["in_memory"]["rows_per_s"]["median"],
            3,
        )
    results.write(summary)
    print(f"wrote {results.path}")
    print_table(
        ["mode", "runs", "median rows/s", "min-max rows/s", "median peak RSS"],
        [
            [mode, row["rows_per_s"]["n"], f"{row['rows_per_s']['median']:,.1f}",
             f"{row['rows_per_s']['min']:,.1f}-{row['rows_per_s']['max']:,.1f}",
             f"{row['peak_rss_mib']['median']:,.0f} MiB"]
            for mode, row in summary.items() if isinstance(row, dict)
        ],
    )  # fmt: skip
    if "bulk_over_in_memory" in summary:
        print(f"\nstreaming / in-memory (medians): {summary['bulk_over_in_memory']}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
