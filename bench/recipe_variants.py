"""Variants of a training recipe on real GLUE data, paired by seed.

A variant is a name, an optional run config file and dotted ``KEY=VALUE`` overrides, exactly
as ``bertfit train --config FILE KEY=VALUE`` takes them; every (task, variant, seed) is one
``bertfit train --task T --seed S`` in a fresh process, on the task's default recipe unless the
variant says otherwise. After training, the run's best model is evaluated on dev with the
per-class report (``bertfit evaluate --report``; classification tasks). Each record is appended
to a JSON-lines file as its run ends; a rerun skips the runs already there, so an interrupted
measurement loses only the run in flight.

``--summarize`` prints, per task, each variant's mean ± sd over seeds of the dev metrics (and,
for classification, the minority class's recall and F1 and the macro F1), then each variant
against ``--baseline`` paired by seed: the mean difference of the main metric, its standard
error, and the share of wall time saved. Variants::

    --variant default                                    # the task's recipe as it is
    --variant balanced:trainer.class_weights=balanced
    --variant patience2:trainer.early_stopping_patience=2
    --variant fp32:trainer.precision=fp32 --variant bf16:trainer.precision=bf16
    --variant tuned:@runs/mrpc-tune/best.yaml            # a config file, then overrides
    --variant ld:optimizer.layer_decay=0.9,reinit_layers=2

    python bench/recipe_variants.py --tasks mrpc --seeds 1,2,3 --variant default \\
        --variant ld:optimizer.layer_decay=0.9 --output bench/results/levers.jsonl
    python bench/recipe_variants.py --summarize bench/results/levers.jsonl --baseline default
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def parse_variant(text: str) -> dict:
    """``NAME[:[@FILE,]KEY=VALUE,...]`` -> ``{"variant", "config_file", "overrides"}``."""
    name, _, rest = text.partition(":")
    config_file, overrides = None, []
    for part in filter(None, rest.split(",")):
        if part.startswith("@"):
            config_file = str(Path(part[1:]).resolve())
        else:
            key, sep, value = part.partition("=")
            if not sep:
                raise argparse.ArgumentTypeError(f"variant {name}: expected KEY=VALUE, got {part}")
            overrides.append([key, value])
    return {"variant": name, "config_file": config_file, "overrides": overrides}


def run_one(job: dict) -> dict:
    """Train one (task, variant, seed), evaluate its best model, return the record. Runs in
    its own process; the run directory is deleted afterwards."""
    import torch

    from bertfit.problem import REGRESSION
    from bertfit.train.config_file import load_run_config
    from bertfit.train.run import evaluate_run, task_of, train_run

    torch.set_num_threads(job["threads"])
    overrides = [("task", job["task"]), ("data_dir", job["data_dir"])]
    overrides += [tuple(pair) for pair in job["overrides"]]
    overrides += [("trainer.seed", str(job["seed"])), ("trainer.save_checkpoints", "false")]
    if job["max_steps"]:
        overrides.append(("trainer.max_steps", str(job["max_steps"])))
    config = load_run_config(job["config_file"], overrides)
    report = task_of(config).problem_type != REGRESSION
    with tempfile.TemporaryDirectory() as run_dir:
        started = time.perf_counter()
        result = train_run(config, run_dir, progress=False)
        wall = time.perf_counter() - started
        results = json.loads((Path(run_dir) / "results.json").read_text())
        (split, *_) = evaluate_run(run_dir, report=report).splits
    return {
        **{key: job[key] for key in ("task", "variant", "seed", "config_file", "overrides")},
        "best": result.best,
        "steps": result.steps,
        "planned_steps": config.optimizer.total_steps,
        "stopped_early": results.get("stopped_early"),
        "report": split.report,
        "wall_seconds": wall,
        "recipe": {
            "learning_rate": config.optimizer.learning_rate,
            "epochs": config.trainer.epochs,
            "warmup_fraction": config.optimizer.warmup_fraction,
            "batch_size": config.trainer.batch_size,
        },
        "precision": config.trainer.precision,
        "threads": job["threads"],
        "torch": torch.__version__,
    }


def job_key(record: dict) -> tuple:
    return (record["task"], record["variant"], record["seed"])


def measure(args) -> None:
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    done = {job_key(r) for r in read_records(output)} if output.exists() else set()
    jobs = [
        {
            **variant,
            "task": task,
            "seed": seed,
            "data_dir": args.data_dir,
            "threads": args.threads,
            "max_steps": args.max_steps,
        }
        for seed in args.seeds  # seed-major: a cut-short measurement still has whole pairs
        for task in args.tasks
        for variant in args.variant
    ]
    jobs = [job for job in jobs if job_key(job) not in done]
    print(f"{len(jobs)} runs to go ({len(done)} already in {output})", flush=True)
    for number, job in enumerate(jobs, 1):
        record = _run_in_child(job)
        with output.open("a") as sink:
            sink.write(json.dumps(record) + "\n")
        main = main_metric_key(record)
        print(
            f"[{number}/{len(jobs)}] {job_key(record)} {main[4:]} {record['best'][main]:.4f} "
            f"in {record['wall_seconds']:.0f} s, {record['steps']} steps",
            flush=True,
        )


def _run_in_child(job: dict) -> dict:
    """``run_one`` in a fresh interpreter: no allocator or thread state carried between runs."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    completed = subprocess.run(
        [sys.executable, __file__, "--run-one", json.dumps(job)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main_metric_key(record: dict) -> str:
    """The best record's first dev metric: the task's main one (it picked the best epoch)."""
    return next(k for k in record["best"] if k.startswith("dev_") and k != "dev_loss")


def minority_class(record: dict) -> str:
    """The dev set's smallest class (CoLA: unacceptable, MRPC: not a paraphrase)."""
    labels = record["report"]["labels"]
    return min(labels, key=lambda name: labels[name]["support"])


def summarize(path: Path, baseline: str | None) -> str:
    """The Markdown tables described in the module docstring."""
    records = read_records(path)
    lines: list[str] = []
    for task in dict.fromkeys(r["task"] for r in records):
        of_task = [r for r in records if r["task"] == task]
        lines += [f"### {task}", ""] + _variant_table(of_task) + [""]
        if baseline is not None:
            lines += _paired_table(of_task, baseline) + [""]
    return "\n".join(lines)


def _variant_table(records: list[dict]) -> list[str]:
    metric_keys = [k for k in records[0]["best"] if k.startswith("dev_") and k != "dev_loss"]
    classes = records[0]["report"] is not None and "averages" in records[0]["report"]
    header = ["variant", "seeds"]
    if classes:
        minority = minority_class(records[0])
        header += [f"recall ({minority})", f"F1 ({minority})", "macro F1"]
    header += [key[4:] for key in metric_keys] + ["s/run (median)", "steps"]
    lines = [_row(header), _row(["---"] * len(header))]
    for variant in dict.fromkeys(r["variant"] for r in records):
        runs = sorted((r for r in records if r["variant"] == variant), key=lambda r: r["seed"])
        cells = [variant, ",".join(str(r["seed"]) for r in runs)]
        if classes:
            rows = [r["report"]["labels"][minority] for r in runs]
            cells.append(_mean_sd([row["recall"] for row in rows]))
            cells.append(_mean_sd([row["f1"] for row in rows]))
            cells.append(_mean_sd([r["report"]["averages"]["macro"]["f1"] for r in runs]))
        cells += [_mean_sd([r["best"][key] for r in runs]) for key in metric_keys]
        cells.append(f"{np.median([r['wall_seconds'] for r in runs]):.0f}")
        cells.append("/".join(str(r["steps"]) for r in runs))
        lines.append(_row(cells))
    return lines


def _paired_table(records: list[dict], baseline: str) -> list[str]:
    """Each variant minus ``baseline`` on the same seed: main metric, training steps and wall
    time (steps are exact; wall times compare only between runs that met the same load)."""
    by_key = {job_key(r): r for r in records}
    header = ["variant - " + baseline, "pairs", "main metric: mean difference ± s.e."]
    header += ["per seed", "steps saved (median)", "wall time saved (median)"]
    lines = [_row(header), _row(["---"] * len(header))]
    for variant in dict.fromkeys(r["variant"] for r in records):
        if variant == baseline:
            continue
        pairs = [
            (by_key[(r["task"], baseline, r["seed"])], r)
            for r in sorted(records, key=lambda r: r["seed"])
            if r["variant"] == variant and (r["task"], baseline, r["seed"]) in by_key
        ]
        if not pairs:
            continue
        key = main_metric_key(pairs[0][0])
        differences = np.array([other["best"][key] - base["best"][key] for base, other in pairs])
        error = differences.std(ddof=1) / np.sqrt(len(pairs)) if len(pairs) > 1 else 0.0
        saved = [1 - other["wall_seconds"] / base["wall_seconds"] for base, other in pairs]
        steps = [1 - other["steps"] / base["steps"] for base, other in pairs]
        per_seed = " / ".join(f"{d:+.4f}" for d in differences)
        lines.append(
            _row(
                [
                    variant,
                    str(len(pairs)),
                    f"{key[4:]} {differences.mean():+.4f} ± {error:.4f}",
                    per_seed,
                    f"{np.median(steps):.1%}",
                    f"{np.median(saved):.1%}",
                ]
            )
        )
    return lines


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _mean_sd(values: list[float]) -> str:
    values = np.asarray(values, dtype=float)
    sd = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.4f} ± {sd:.4f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="mrpc", type=lambda s: s.split(","))
    parser.add_argument("--seeds", default="1,2,3", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--variant", action="append", type=parse_variant, default=[])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "glue"))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--max-steps", type=int, help="cut every run short (a smoke test)")
    parser.add_argument("--output", default=str(REPO / "bench/results/recipe_variants.jsonl"))
    parser.add_argument("--summarize", metavar="JSONL", help="print the tables of a results file")
    parser.add_argument("--baseline", help="the variant the others are paired against")
    parser.add_argument("--run-one", metavar="JOB", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_one:
        print(json.dumps(run_one(json.loads(args.run_one))))
        return 0
    if args.summarize:
        print(summarize(Path(args.summarize), args.baseline))
        return 0
    if not args.variant:
        parser.error("name at least one --variant (e.g. --variant default)")
    measure(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
