"""Peak memory and speed of reading and tokenizing large users' files (CSV of sentence pairs).

Writes CSV files of 100k, 300k and 1,000,000 labelled sentence pairs (words of the packaged
vocabulary, ~20 a sentence, MRPC-like; deterministic by ``--seed``) into a temporary directory
(or ``--keep DIR``, reused when present), then for each runs the path ``bertfit train --train
FILE`` takes in a fresh process: check rows and read labels (first pass), infer the task, then
stream the texts in chunks through the tokenizer's parallel batch API into a RaggedPacked store
(max length 128). Each child reports its peak RSS (``VmHWM``), the RSS after imports (the
floor), rows, tokens and wall seconds. ``--baseline`` sizes also run the old list path
(``read_user_file`` + ``label_examples`` + lists of Python ints) for comparison.

    .venv/bin/python bench/stream_tokenize.py [--sizes 100000 300000 1000000] [--keep DIR]

Prints a table and writes ``bench/results/stream_tokenize.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_SEQ_LENGTH = 128
COLUMNS = ("sentence1", "sentence2", "label")


def vocab_path() -> Path:
    from bertfit.model.presets import default_model_dir

    return default_model_dir() / "vocab.txt"


def vocab_words() -> list[str]:
    """Whole lower-case words of the vocabulary (no ``##`` pieces, no specials, no digits)."""
    words = vocab_path().read_text(encoding="utf-8").split("\n")
    return [w for w in words if w.isascii() and w.isalpha() and len(w) > 1]


def write_csv(path: Path, rows: int, seed: int) -> None:
    """``rows`` pairs of 12 to 28 random vocabulary words each, labels 0/1; same seed, same file."""
    import numpy as np

    words = np.array(vocab_words(), dtype=object)
    rng = np.random.default_rng(seed)
    block = 10_000
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for start in range(0, rows, block):
            count = min(block, rows - start)
            lengths = rng.integers(12, 29, size=(count, 2))
            picks = rng.integers(0, len(words), size=int(lengths.sum()))
            labels = rng.integers(0, 2, size=count)
            cuts = np.cumsum(lengths.reshape(-1))[:-1]
            sentences = [" ".join(part) + " ." for part in np.split(words[picks], cuts)]
            writer.writerows(
                (sentences[2 * i], sentences[2 * i + 1], int(labels[i])) for i in range(count)
            )


def memory_kib() -> dict[str, int]:
    """Current and peak resident memory of this process (KiB) from /proc/self/status."""
    values = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values


def child(mode: str, path: str, import_torch: bool) -> dict:
    """Run one read+tokenize in this process and measure it."""
    if import_torch:
        import torch  # noqa: F401  (a training process has it loaded; see its share of RSS)
    from bertfit.data.encoding import encode_stream
    from bertfit.data.user_files import Columns, label_examples, read_user_file, user_task
    from bertfit.data.user_stream import FileExamples, scan_label_ids, scan_task, scan_user_file
    from bertfit.text.processor import TextProcessor
    from bertfit.text.tokenizer import WordpieceTokenizer

    columns = Columns(*COLUMNS)
    processor = TextProcessor(WordpieceTokenizer(vocab_path()), MAX_SEQ_LENGTH)
    floor = memory_kib()["VmRSS"]
    started, cpu_started = time.perf_counter(), time.process_time()
    if mode == "stream":
        scan = scan_user_file(path, columns)
        task, _ = scan_task(scan, columns)
        examples = FileExamples(Path(path), columns, scan_label_ids(scan, task, "train"), path)
        scanned = time.perf_counter() - started
        store, _ = encode_stream(processor, examples, progress=False)
        rows, tokens = len(store), store.num_tokens
        spilled = type(store.ids).__name__ == "memmap"
        store_bytes = store.nbytes
    else:
        raw = read_user_file(path, columns)
        task, _ = user_task(raw, columns)
        examples = label_examples(raw, task, "train")
        scanned = time.perf_counter() - started
        packed = []
        for start in range(0, len(examples), 8192):  # as TextClassifier.encode did
            packed += processor.encode([c[start : start + 8192] for c in examples.columns])
        rows, tokens = len(packed), sum(len(ids) for ids, _ in packed)
        spilled = False
        store_bytes = None
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    memory = memory_kib()
    return {
        "mode": mode,
        "rows": rows,
        "tokens": tokens,
        "seconds": seconds,
        "read_seconds": scanned,
        "rows_per_second": rows / seconds,
        # CPU seconds of all threads per wall second: above 1 when the batch API runs in parallel.
        "cores_busy": cpu_seconds / seconds,
        "store_mib": None if store_bytes is None else store_bytes / 2**20,
        "floor_rss_mib": floor / 1024,
        "peak_rss_mib": memory["VmHWM"] / 1024,
        "store_spilled_to_disk": spilled,
        "torch_imported": import_torch,
    }


def run_child(mode: str, path: Path, import_torch: bool) -> dict:
    command = [sys.executable, __file__, "--child", mode, str(path)]
    if import_torch:
        command.append("--import-torch")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    env.pop("TOKENIZERS_PARALLELISM", None)  # the batch API must use every core
    output = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(output.splitlines()[-1])


def print_table(results: list[dict]) -> None:
    header = (
        f"{'mode':<9}{'rows':>10}{'file MiB':>10}{'tokens':>12}{'seconds':>9}"
        f"{'rows/s':>9}{'cores':>6}{'floor MiB':>10}{'peak MiB':>10}{'store MiB':>10}  on disk"
    )
    print(header)
    for r in results:
        print(
            f"{r['mode']:<9}{r['rows']:>10}{r['file_mib']:>10.1f}{r['tokens']:>12}"
            f"{r['seconds']:>9.1f}{r['rows_per_second']:>9.0f}{r['cores_busy']:>6.2f}"
            f"{r['floor_rss_mib']:>10.0f}{r['peak_rss_mib']:>10.0f}"
            f"{'-' if r['store_mib'] is None else round(r['store_mib']):>10}"
            f"  {'yes' if r['store_spilled_to_disk'] else 'no'}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--baseline", type=int, nargs="*", default=[100_000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", help="directory for the CSV files, kept (default: temporary)")
    parser.add_argument("--import-torch", action="store_true", help="load torch in each child")
    parser.add_argument(
        "--output", default=str(REPO / "bench" / "results" / "stream_tokenize.json")
    )
    parser.add_argument("--child", nargs=2, metavar=("MODE", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.import_torch)))
        return 0
    directory = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bertfit-bench-"))
    directory.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for size in args.sizes:
            path = directory / f"pairs-{size}-seed{args.seed}.csv"
            if not path.is_file():
                write_csv(path, size, args.seed)
            modes = ["stream"] + (["baseline"] if size in args.baseline else [])
            for mode in modes:
                result = run_child(mode, path, args.import_torch)
                result["file_mib"] = path.stat().st_size / 2**20
                results.append(result)
                print(json.dumps(result), file=sys.stderr)
    finally:
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
    print_table(results)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "seed": args.seed}
    load = os.getloadavg()
    output.write_text(json.dumps({"machine": machine, "load_avg": load, "results": results}))
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
