"""The ``bertfit predict SOURCE --input IN --output OUT`` command as a user runs it, measured.

Each figure is one subcommand; each runs the command as a whole process (``python -m bertfit
predict ... --quiet --threads T``) on the inputs and the export of ``bench/bulk_predict.py``
(MRPC pairs resampled into Parquet with an ``id`` column; the packaged MiniLM with a fresh
two-class head, int8), made once under ``bench/results/bulk/`` and reused:

- ``memory``: peak RSS of the whole run at each of ``--sizes`` rows (the same command, only
  the input differs), to show that it is flat. Two figures per run: the kernel's
  ``ru_maxrss`` of the command's process (``wait4``; exact, the largest RSS it ever had), and
  the sum of RSS over its process tree, sampled every ``--poll`` seconds (for the in-process
  engine, one process: the two agree up to the sampling).
- ``resume``: the command run uninterrupted; then the same command (another output path)
  killed with ``SIGKILL`` (its whole process group) at ``--kill-at`` of the uninterrupted
  wall time, and started again to completion. Reports the committed rows at the kill, the
  wall time of both parts against the uninterrupted run's, and compares the two outputs row
  for row, every column in order (see :func:`compare_outputs` for the tolerance).
- ``ray``: ``--engine ray`` on a local Ray against the in-process engine at the same total
  threads (``--threads T`` in-process; ``--workers W --threads T/W`` on Ray, ``--ray-layout
  WxT/W``), on the same input split into a folder of ``--shards`` Parquet files (the form
  data teams keep), ``--repeat`` times in alternating order.
  Reports the wall time of each whole command (Ray's start included: it is what a user waits
  for), the ratio of the medians, and whether the two outputs are the same rows.

Every finished run is written at once to ``bench/results/bulk_<figure>.json``; ``--resume``
keeps the runs already there (with the same settings) and does only the rest. A command still
running when this script dies is killed with it (``PR_SET_PDEATHSIG``)::

    .venv/bin/python bench/bulk_runs.py memory --sizes 100000,1000000 --resume
    .venv/bin/python bench/bulk_runs.py resume --rows 200000 --resume
    .venv/bin/python bench/bulk_runs.py ray --rows 200000 --repeat 3 --resume
    .venv/bin/python bench/bulk_runs.py resume --rows 2000   # a short check that it runs
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from bulk_predict import (  # noqa: E402
    WORK,
    Results,
    alternating,
    make_export,
    make_input,
    make_shards,
    print_table,
    spread,
)

PAGE = os.sysconf("SC_PAGE_SIZE")
#: Largest difference allowed between two probabilities called equal when not bit-identical.
TOLERANCE = 1e-6


def predict_command(args, source: str, input_path: Path, output: Path, *extra: str) -> list[str]:
    """``bertfit predict`` with this benchmark's settings (its own process, this source tree)."""
    return [
        sys.executable, "-m", "bertfit", "predict", source, "--input", str(input_path),
        "--output", str(output), "--quiet", "--threads", str(args.threads),
        "--batch-size", str(args.batch_size), "--chunk-rows", str(args.chunk_rows), *extra,
    ]  # fmt: skip


def shown(command: list[str]) -> str:
    """A command as a user would type it."""
    return " ".join(["bertfit", *command[3:]])


def clear_output(output: Path) -> None:
    """Remove an output, its parts and its rejects, so that the next command starts afresh."""
    shutil.rmtree(output.with_name(output.name + ".parts"), ignore_errors=True)
    output.unlink(missing_ok=True)
    output.with_name(output.stem + ".rejects.jsonl").unlink(missing_ok=True)


def committed_rows(output: Path) -> int:
    """Input rows in the parts that the output's manifest lists as committed."""
    try:
        manifest = json.loads(
            (output.with_name(output.name + ".parts") / "manifest.json").read_text()
        )
    except (OSError, json.JSONDecodeError):
        return 0
    return sum(part["input_rows"] for part in manifest.get("parts", []))


def tree_rss_bytes(root: int) -> int:
    """Resident memory summed over ``root`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        with contextlib.suppress(OSError):  # it ended meanwhile
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        stack.extend(children.get(pid, []))
    return total


def _die_with_parent() -> None:
    # In the child before exec: SIGKILL it if this script dies (PR_SET_PDEATHSIG = 1), so that
    # a benchmark killed mid-run leaves no orphan taking the CPU from the next one.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def run_command(
    command: list[str], log: Path, poll: float, kill_after: float | None = None, output=None
) -> dict:
    """Run ``command`` in a process group of its own; its wall time and peak memory.

    With ``kill_after`` seconds, the whole group gets SIGKILL then (if still running), and the
    rows committed to ``output`` at that moment are recorded.
    """
    path = [str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}  # this tree's bertfit
    log.parent.mkdir(parents=True, exist_ok=True)
    peak_tree, killed, done = [0], threading.Event(), threading.Event()

    def watch() -> None:  # samples the tree's RSS, and kills on time; the wait stays exact
        while not done.wait(poll):
            peak_tree[0] = max(peak_tree[0], tree_rss_bytes(process.pid))
            late = kill_after is not None and time.perf_counter() - started >= kill_after
            if late and not killed.is_set():
                killed.set()
                with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                    os.killpg(process.pid, signal.SIGKILL)

    with open(log, "w") as handle:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, env=env,
            start_new_session=True, preexec_fn=_die_with_parent,
        )  # fmt: skip
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            raise
        finally:
            done.set()
        seconds = time.perf_counter() - started
        watcher.join()
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    run = {
        "command": shown(command),
        "wall_s": round(seconds, 2),
        "exit": process.returncode,
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "peak_tree_rss_mib_sampled": round(peak_tree[0] / 2**20, 1),
        "summary_line": summary_line(log),
    }
    if killed.is_set():  # read once the process is gone: what a rerun finds
        run["committed_rows_at_kill"] = committed_rows(output)
    elif process.returncode != 0:
        raise RuntimeError(f"{shown(command)} failed (exit {process.returncode}); see {log}")
    return run


def summary_line(log: Path) -> str:
    """The command's last ``bertfit:`` line (its summary), or its last line."""
    lines = log.read_text(errors="replace").strip().splitlines() or [""]
    return next((line for line in reversed(lines) if line.startswith("bertfit:")), lines[-1])


def compare_outputs(first: Path, second: Path) -> dict:
    """Two Parquet outputs compared row for row, every column in order.

    Every column but the probabilities must be equal exactly (ids, labels, class ids). The
    probabilities are expected to be bit-identical too: a resumed run cuts the input into the
    same chunks and length-sorted batches, so each row is computed with the same batch, padding
    and kernels. Where they are not, the largest difference is reported and the outputs count
    as equal within :data:`TOLERANCE` (float32 probabilities; 1e-6 is far below any difference
    that could change a label, and far above the last-bit noise of another summation order).
    """
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    a, b = pq.read_table(first), pq.read_table(second)
    result = {
        "rows": [a.num_rows, b.num_rows],
        "same_columns_in_order": a.schema.equals(b.schema),
        "columns": {},
    }
    if not result["same_columns_in_order"] or a.num_rows != b.num_rows:
        result.update(identical=False, equal_within_tolerance=False)
        return result
    identical, within = True, True
    for name in a.column_names:
        x, y = a.column(name).combine_chunks(), b.column(name).combine_chunks()
        if x.equals(y):
            result["columns"][name] = "identical"
            continue
        identical = False
        if name in ("probabilities", "logits", "score"):
            values = [np.asarray(pc.list_flatten(c) if name != "score" else c, dtype=np.float64)
                      for c in (x, y)]  # fmt: skip
            if values[0].shape != values[1].shape:
                within = False
                result["columns"][name] = "lists of other lengths"
                continue
            difference = float(np.max(np.abs(values[0] - values[1])))
            within &= difference <= TOLERANCE
            result["columns"][name] = {"max_abs_difference": difference}
        else:
            within = False
            unequal = pc.sum(pc.invert(pc.fill_null(pc.equal(x, y), False))).as_py()
            result["columns"][name] = {"rows_differing": unequal}
    result.update(identical=identical, equal_within_tolerance=within, tolerance=TOLERANCE)
    return result


# -- the figures ----------------------------------------------------------------------------------


def memory(args, source: str) -> Results:
    """Peak RSS of the same command at each size."""
    sizes = [int(size) for size in args.sizes.split(",")]
    results = Results("bulk_memory", settings(args, source, sizes=sizes), args.resume)
    for rows in sizes:
        key = f"rows={rows}"
        if key in results.runs:
            continue
        input_path = make_input(args.data_dir, rows, args.seed)
        output = WORK / f"memory-{rows}.parquet"
        clear_output(output)
        run = run_command(
            predict_command(args, source, input_path, output), WORK / f"{key}.log", args.poll
        )
        run["rows_per_s"] = round(rows / run["wall_s"], 1)
        results.add(key, run)
        print(f"{key}: {run['peak_rss_mib']} MiB, {run['wall_s']} s", file=sys.stderr)
    runs = [results.runs[f"rows={rows}"] for rows in sizes]
    peaks = [run["peak_rss_mib"] for run in runs]
    results.write({"largest_over_smallest_peak": round(max(peaks) / min(peaks), 3)})
    print_table(
        ["rows", "peak RSS (ru_maxrss)", "process tree, sampled", "wall time", "rows/s"],
        [[f"{rows:,}", f"{run['peak_rss_mib']:,.0f} MiB",
          f"{run['peak_tree_rss_mib_sampled']:,.0f} MiB", f"{run['wall_s']:,.1f} s",
          f"{run['rows_per_s']:,.1f}"] for rows, run in zip(sizes, runs)],
    )  # fmt: skip
    print(
        f"\nlargest / smallest peak RSS: {results.data['summary']['largest_over_smallest_peak']}x"
    )
    return results


def resume(args, source: str) -> Results:
    """An uninterrupted run against a run killed part way and started again."""
    results = Results(
        "bulk_resume", settings(args, source, rows=args.rows, kill_at=args.kill_at), args.resume
    )
    input_path = make_input(args.data_dir, args.rows, args.seed)
    whole, broken = (
        WORK / f"resume-{args.rows}-whole.parquet",
        WORK / f"resume-{args.rows}-killed.parquet",
    )
    if "uninterrupted" not in results.runs or not whole.is_file():
        clear_output(whole)
        command = predict_command(args, source, input_path, whole)
        results.add("uninterrupted", run_command(command, WORK / "resume-whole.log", args.poll))
    uninterrupted = results.runs["uninterrupted"]
    if "killed_then_rerun" not in results.runs or not broken.is_file():
        # Killed and rerun form one measurement: a rerun cut short by this script's own death
        # would be a second interruption, so both are done again.
        clear_output(broken)
        command = predict_command(args, source, input_path, broken)
        kill_after = args.kill_at * uninterrupted["wall_s"]
        first = run_command(command, WORK / "resume-killed.log", args.poll, kill_after, broken)
        if "committed_rows_at_kill" not in first:
            raise RuntimeError("the command ended before the kill; raise --rows")
        first["output_exists_after_kill"] = broken.exists()
        rerun = run_command(command, WORK / "resume-rerun.log", args.poll)
        total = first["wall_s"] + rerun["wall_s"]
        results.add("killed_then_rerun", {
            "killed": first, "rerun": rerun, "total_wall_s": round(total, 2),
            "total_over_uninterrupted": round(total / uninterrupted["wall_s"], 3),
        })  # fmt: skip
    pair = results.runs["killed_then_rerun"]
    comparison = compare_outputs(whole, broken)
    results.write({"comparison": comparison})
    killed = pair["killed"]
    print_table(
        ["run", "wall time", "rows committed at the kill"],
        [["uninterrupted", f"{uninterrupted['wall_s']:,.1f} s", ""],
         [f"killed at {args.kill_at:.0%} of that", f"{killed['wall_s']:,.1f} s",
          f"{killed['committed_rows_at_kill']:,} of {args.rows:,}"],
         ["the same command again", f"{pair['rerun']['wall_s']:,.1f} s", ""],
         ["killed + again", f"{pair['total_wall_s']:,.1f} s",
          f"{pair['total_over_uninterrupted']}x the uninterrupted run"]],
    )  # fmt: skip
    verdict = "identical" if comparison["identical"] else (
        f"equal within {TOLERANCE}" if comparison["equal_within_tolerance"] else "DIFFERENT"
    )  # fmt: skip
    print(f"\noutputs, row for row ({comparison['rows'][0]:,} rows, every column): {verdict}")
    print(f"rerun said: {pair['rerun'].get('summary_line', '')}")
    return results


def ray_against_local(args, source: str) -> Results:
    """``--engine ray`` against in-process at the same total threads."""
    workers, per_worker = (int(n) for n in args.ray_layout.split("x"))
    results = Results(
        "bulk_ray",
        settings(args, source, rows=args.rows, shards=args.shards, layout=args.ray_layout),
        args.resume,
    )
    shards = make_shards(make_input(args.data_dir, args.rows, args.seed), args.shards)
    engines = {
        "in-process": (),
        "ray": ("--engine", "ray", "--workers", str(workers)),
    }
    outputs = {name: WORK / f"ray-bench-{name}.parquet" for name in engines}
    for rep, name in alternating(list(engines), args.repeat):
        key = f"{name}#{rep}"
        if key in results.runs:
            continue
        clear_output(outputs[name])
        threads = args.threads if name == "in-process" else per_worker
        command = predict_command(args, source, shards, outputs[name], *engines[name])
        command[command.index("--threads") + 1] = str(threads)
        run = run_command(command, WORK / f"ray-{key}.log", args.poll)
        run["rows_per_s"] = round(args.rows / run["wall_s"], 1)
        results.add(key, run)
        print(f"{key}: {run['wall_s']} s", file=sys.stderr)
    walls = {
        name: spread([run["wall_s"] for key, run in results.runs.items() if key.startswith(name)])
        for name in engines
    }
    summary = {
        "wall_s": walls,
        "ray_over_in_process": round(walls["ray"]["median"] / walls["in-process"]["median"], 3),
        "same_rows": compare_outputs(outputs["in-process"], outputs["ray"]),
    }
    results.write(summary)
    print_table(
        ["engine", "threads", "runs", "median wall time", "min-max", "rows/s (median)"],
        [[name, f"{args.threads}" if name == "in-process" else f"{workers} x {per_worker}",
          walls[name]["n"], f"{walls[name]['median']:,.1f} s",
          f"{walls[name]['min']:,.1f}-{walls[name]['max']:,.1f} s",
          f"{args.rows / walls[name]['median']:,.1f}"] for name in engines],
    )  # fmt: skip
    same = summary["same_rows"]
    print(f"\nRay / in-process (median wall time): {summary['ray_over_in_process']}x")
    print(f"same rows: identical={same['identical']}, within {TOLERANCE}: "
          f"{same['equal_within_tolerance']}")  # fmt: skip
    return results


def settings(args, source: str, **extra) -> dict:
    """What decides a figure's runs (a --resume keeps runs only with the same)."""
    return {
        "source": source, "seed": args.seed, "threads": args.threads,
        "batch_size": args.batch_size, "chunk_rows": args.chunk_rows, **extra,
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("figure", choices=["memory", "resume", "ray"])
    parser.add_argument("--source", help="exported model (default: MiniLM, fresh head)")
    parser.add_argument("--precision", default="int8", choices=["int8", "fp32"])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data" / "glue")
    parser.add_argument("--rows", type=int, default=2000, help="resume, ray: input rows")
    parser.add_argument("--sizes", default="2000,10000", help="memory: input rows, comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="in-process model threads")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--chunk-rows", type=int, default=10_000)
    parser.add_argument("--kill-at", type=float, default=0.5, help="resume: fraction of the wall")
    parser.add_argument("--ray-layout", default="2x1", help="ray: WORKERSxTHREADS per worker")
    parser.add_argument("--shards", type=int, default=8, help="ray: Parquet files of the input")
    parser.add_argument("--repeat", type=int, default=1, help="ray: runs of each engine")
    parser.add_argument("--poll", type=float, default=0.25, help="seconds between samples")
    parser.add_argument("--resume", action="store_true", help="keep the runs already recorded")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    source = args.source or str(make_export(args.precision))
    results = {"memory": memory, "resume": resume, "ray": ray_against_local}[args.figure](
        args, source
    )
    print(f"wrote {results.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
