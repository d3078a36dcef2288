"""Distilled MRPC students against their teachers: dev quality over seeds, export speed, in one run.

1. Teachers: ``--teachers RUN,RUN,...`` (finished MRPC runs, one per seed), or else one per
   ``--seeds`` trained with the default recipe (``bertfit train --task mrpc``) in
   ``WORK/teacher-seed-N``.
2. Students: per teacher, ``bertfit distill`` with its defaults (init ``spread``, temperature
   2, alpha 0.5, the teacher's recipe and seed) to 3 and 2 layers, and 4 with ``--with-4``
   (``WORK/student-L3-seed-N``, ...).
3. What distillation adds: per seed, the packaged pretrained encoder cut to 3 layers with no
   teacher (``--baseline-init``, default ``first``: a plain truncation) fine-tuned with the default
   recipe (``WORK/truncated-L3-seed-N``); with ``--ablations`` also the 3-layer student with
   alpha 1 (the teacher's layers as the start, gold labels only), which separates the teacher's
   weights from its soft targets.
4. ``--augment COPIES:EPOCHS``: 3-layer students trained also on COPIES teacher-labelled
   copies of each training pair with words replaced (``bertfit distill --augment``), for
   EPOCHS epochs (``WORK/student-L3-aug4x2-seed-N``).
   ``--layer-weight B``: 3-layer students that also match each layer's [CLS] vector to their
   teacher layer's with weight B (``bertfit distill --layer-weight``), without augmentation
   and, with ``--augment``, with it too (``WORK/student-L3-layers50-seed-N``, ...).
   ``--token-weight W``: 3-layer students that also match every token's vector of each layer
   to their teacher layer's, the teacher run on each batch (``bertfit distill --token-weight``;
   ``WORK/student-L3-tokens1-seed-N``).
5. ``--compare-init``: 3-layer students initialised from the teacher's ``first`` and ``last``
   layers too, against the default ``spread``: the measurement behind that default.
6. Speed: one run of each architecture (the teacher and each student size; the truncation has the
   3-layer student's) exported to ONNX fp32 and int8 and measured with
   ``bench/export_inference.py``'s protocol, each in a fresh process: examples/s over MRPC dev
   at batch 32 with ``--threads`` (2) threads, single-pair p50/p99 with ``--latency-threads``
   (1). Each export is measured ``--speed-reps`` (3) times, the models alternated; the table
   gives medians, and each ratio to the teacher is the median of the repetitions' own ratios.

Finished runs in WORK are reused (a rerun only measures); ``--max-steps`` makes a smoke run.
Prints the quality and speed tables (Markdown) and the issue's targets, and writes
``bench/results/distill.json``::

    .venv/bin/python bench/distill.py --data-dir ../shared/data/glue --seeds 1,2,3 \\
        --with-4 --compare-init --ablations --work runs/distill --threads 2

    # smoke: tiny steps, one seed (a few minutes)
    .venv/bin/python bench/distill.py --seeds 1 --max-steps 5 --work /tmp/distill-smoke
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from bertfit.data.tasks import MRPC
from bertfit.inference import TextClassifier
from bertfit.model.student import build_student, choose_layers
from bertfit.train.config_file import load_run_config
from bertfit.train.run import build_classifier, train_run
from bertfit.train.student_run import distill_run

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_inference import (  # noqa: E402
    ensure_exports,
    machine_and_load,
    measure_in_fresh_process,
    write_record,
)

REPO = Path(__file__).resolve().parents[1]
SPEED_VARIANTS = ("int8", "fp32")
# The targets for the 3-layer student.
MAX_ACCURACY_DROP = 0.015
MIN_INT8_SPEEDUP = 1.8
MAX_INT8_P50_MS = 5.0


def is_finished(run: Path) -> bool:
    return (run / "results.json").is_file()


def recipe_overrides(args) -> list[tuple[str, object]]:
    """Settings every run of this benchmark shares (the data, and --max-steps for a smoke)."""
    overrides = [("data_dir", str(Path(args.data_dir).resolve()))]
    if args.max_steps:
        overrides.append(("trainer.max_steps", args.max_steps))
    return overrides


def train_default(args, output: Path, seed: int, model: str | None = None) -> Path:
    """MRPC with the default recipe (on ``model``: default the packaged MiniLM)."""
    if not is_finished(output):
        overrides = [("task", "mrpc"), ("trainer.seed", seed), *recipe_overrides(args)]
        if model is not None:
            overrides.append(("model", model))
        timed(f"train {output.name}", train_run, load_run_config(None, overrides), output)
    return output


def distill(args, teacher: Path, output: Path, layers: int, **options) -> Path:
    """A ``layers``-layer student of ``teacher`` with ``bertfit distill``'s defaults."""
    if not is_finished(output):
        overrides = recipe_overrides(args)
        timed(
            f"distill {output.name}", distill_run, teacher, output, layers,
            overrides=overrides, overwrite=True, **options,
        )  # fmt: skip
    return output


def truncated_encoder(args, work: Path, layers: int) -> Path:
    """The packaged pretrained encoder cut to ``layers`` layers (``--baseline-init``), saved as
    a model directory that ``--model`` takes (its random head is replaced when fine-tuned)."""
    directory = work / f"pretrained-L{layers}-{args.baseline_init}"
    if not (directory / "config.json").is_file():
        pretrained = build_classifier(load_run_config(None, [("task", "mrpc")]), MRPC)
        chosen = choose_layers(pretrained.model.config.num_layers, layers, args.baseline_init)
        student = build_student(pretrained.model, chosen)
        TextClassifier(student, pretrained.tokenizer, pretrained.info).save_pretrained(directory)
    return directory


def timed(what: str, function, *args, **kwargs) -> None:
    """Call ``function`` and print how long it took."""
    started = time.perf_counter()
    function(*args, **kwargs)
    print(f"{what}: {time.perf_counter() - started:.0f} s", flush=True)


def seed_of(run: Path) -> int:
    """The seed a run was trained with."""
    return json.loads((run / "config.json").read_text())["trainer"]["seed"]


def quality(runs: list[Path]) -> dict:
    """Each run's best dev accuracy and F1, and their mean and sample std over runs."""
    rows = []
    for run in runs:
        best = json.loads((run / "results.json").read_text())["best"]
        rows.append({"run": str(run), "accuracy": best["dev_accuracy"], "f1": best["dev_f1"]})
    summary = {"runs": rows}
    for metric in ("accuracy", "f1"):
        values = [row[metric] for row in rows]
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        summary[metric] = {"mean": statistics.mean(values), "std": std}
    return summary


def measure_speeds(args, architectures: dict[str, Path]) -> dict:
    """Each architecture exported fp32 and int8, each export measured in a fresh process
    (export_inference.py's protocol) ``--speed-reps`` times, the architectures alternated
    within each repetition so that a change in the host's load hits them all alike."""
    workers = {}
    for name, run in architectures.items():
        work = Path(args.work) / "exports" / name
        ensure_exports(run, work, SPEED_VARIANTS)
        workers[name] = argparse.Namespace(
            run=str(run), data_dir=args.data_dir, work=str(work),
            threads=args.threads, latency_threads=args.latency_threads,
        )  # fmt: skip
    reps: dict[str, dict[str, list[dict]]] = {
        name: {variant: [] for variant in SPEED_VARIANTS} for name in architectures
    }
    for rep in range(args.speed_reps):
        for name, worker in workers.items():
            for variant in SPEED_VARIANTS:
                figures = measure_in_fresh_process(worker, f"bertfit-onnx-{variant}")
                reps[name][variant].append(figures)
                print(f"rep {rep + 1} {name} {variant}: {figures}", flush=True)
    return summarize_speeds(reps)


def summarize_speeds(reps: dict[str, dict[str, list[dict]]], teacher: str = "teacher") -> dict:
    """Per model and export: the median of each figure over repetitions, and the ratios to the
    teacher as medians of each repetition's own ratio (the two measured minutes apart)."""
    speeds = {}
    for name, by_variant in reps.items():
        speeds[name] = {}
        for variant, runs in by_variant.items():
            base = reps[teacher][variant]
            row = {
                key: statistics.median(run[key] for run in runs)
                for key in ("examples_per_s", "p50_ms", "p99_ms")
            }
            row["throughput_x_teacher"] = statistics.median(
                run["examples_per_s"] / ref["examples_per_s"] for run, ref in zip(runs, base)
            )
            row["p50_x_teacher"] = statistics.median(
                run["p50_ms"] / ref["p50_ms"] for run, ref in zip(runs, base)
            )
            row["reps"] = runs
            speeds[name][variant] = row
    return speeds


def quality_table(models: dict) -> str:
    lines = [
        "| model | runs | dev accuracy | dev F1 | accuracy vs teacher |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    teacher = models["teacher"]["accuracy"]["mean"]
    for name, row in models.items():
        acc, f1 = row["accuracy"], row["f1"]
        lines.append(
            f"| {name} | {len(row['runs'])} | {acc['mean']:.4f} ± {acc['std']:.4f} "
            f"| {f1['mean']:.4f} ± {f1['std']:.4f} | {100 * (acc['mean'] - teacher):+.2f} pts |"
        )
    return "\n".join(lines)


def speed_table(speeds: dict) -> str:
    lines = [
        "| model | int8 ex/s | x teacher | fp32 ex/s | x teacher | int8 p50 ms | int8 p99 ms "
        "| p50 x teacher |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in speeds.items():
        int8, fp32 = row["int8"], row["fp32"]
        lines.append(
            f"| {name} | {int8['examples_per_s']:.1f} | {int8['throughput_x_teacher']:.2f}x "
            f"| {fp32['examples_per_s']:.1f} | {fp32['throughput_x_teacher']:.2f}x "
            f"| {int8['p50_ms']:.2f} | {int8['p99_ms']:.2f} | {int8['p50_x_teacher']:.2f}x |"
        )
    return "\n".join(lines)


def parse_augment(text: str) -> tuple[int, int]:
    """``--augment COPIES:EPOCHS`` -> (copies, epochs)."""
    copies, _, epochs = text.partition(":")
    return int(copies), int(epochs or 1)


def targets(models: dict, speeds: dict, name: str = "student-L3") -> dict:
    """The issue's targets for a 3-layer student (by default the command's defaults)."""
    student, teacher = models[name], models["teacher"]
    int8 = speeds["student-L3"]["int8"]  # every 3-layer variant has this architecture
    drop = teacher["accuracy"]["mean"] - student["accuracy"]["mean"]
    return {
        "accuracy_within_1.5_points": {"drop": drop, "met": drop <= MAX_ACCURACY_DROP},
        "int8_throughput_at_least_1.8x": {
            "ratio": int8["throughput_x_teacher"],
            "met": int8["throughput_x_teacher"] >= MIN_INT8_SPEEDUP,
        },
        "int8_p50_under_5_ms": {"p50_ms": int8["p50_ms"], "met": int8["p50_ms"] < MAX_INT8_P50_MS},
    }


def three_layer_variants(args) -> list[tuple[str, str, dict]]:
    """(model name, run directory stem, ``distill_run`` options) of each 3-layer student that
    ``--augment``, ``--layer-weight`` and ``--token-weight`` ask for."""
    variants = []
    augment = {}
    if args.augment:
        copies, epochs = parse_augment(args.augment)
        augment = {"augment": copies, "epochs": epochs}
        variants.append(("student-L3-augment", f"student-L3-aug{copies}x{epochs}", augment))
    if args.layer_weight:
        weight = args.layer_weight
        layers = {"layer_weight": weight}
        variants.append(("student-L3-layers", f"student-L3-layers{weight:g}", layers))
        if augment:
            stem = f"student-L3-aug{augment['augment']}x{augment['epochs']}-layers{weight:g}"
            variants.append(("student-L3-augment-layers", stem, {**augment, **layers}))
    if args.token_weight:
        weight = args.token_weight
        tokens = {"token_weight": weight}
        variants.append(("student-L3-tokens", f"student-L3-tokens{weight:g}", tokens))
    return variants


def train_everything(args, work: Path) -> tuple[dict[str, list[Path]], dict[str, Path]]:
    """Every run of the benchmark by model name (one per seed), and one run per architecture
    to measure the speed of."""
    seeds = [int(seed) for seed in args.seeds.split(",")]
    if args.teachers:
        teachers = [Path(run) for run in args.teachers.split(",")]
    else:
        teachers = [train_default(args, work / f"teacher-seed-{s}", s) for s in seeds]
    sizes = [4, 3, 2] if args.with_4 else [3, 2]
    runs: dict[str, list[Path]] = {"teacher": teachers}
    for size in sizes:
        runs[f"student-L{size}"] = [
            distill(args, teacher, work / f"student-L{size}-seed-{i}", size)
            for i, teacher in enumerate(teachers, start=1)
        ]
    if args.compare_init:
        for init in ("first", "last"):
            runs[f"student-L3-{init}"] = [
                distill(args, teacher, work / f"student-L3-{init}-seed-{i}", 3, init=init)
                for i, teacher in enumerate(teachers, start=1)
            ]
    for name, directory, options in three_layer_variants(args):
        runs[name] = [
            distill(args, teacher, work / f"{directory}-seed-{i}", 3, **options)
            for i, teacher in enumerate(teachers, start=1)
        ]
    if args.ablations:
        runs["student-L3-alpha1"] = [
            distill(args, teacher, work / f"student-L3-alpha1-seed-{i}", 3, alpha=1.0)
            for i, teacher in enumerate(teachers, start=1)
        ]
    truncated = str(truncated_encoder(args, work, 3))
    name = f"truncated-L3-{args.baseline_init}"
    runs[name] = [
        train_default(args, work / f"{name}-seed-{seed}", seed, truncated)
        for seed in map(seed_of, teachers)  # the teachers' seeds
    ]
    architectures = {"teacher": teachers[0]}
    architectures.update({f"student-L{size}": runs[f"student-L{size}"][0] for size in sizes})
    return runs, architectures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "glue"))
    parser.add_argument("--teachers", help="finished MRPC runs, comma-separated, one per seed")
    parser.add_argument("--seeds", default="1,2,3", help="teachers' seeds when training them")
    parser.add_argument("--work", default="runs/distill", help="where runs and exports go")
    parser.add_argument("--with-4", action="store_true", help="also 4-layer students")
    parser.add_argument(
        "--compare-init", action="store_true", help="also 3-layer students from first/last layers"
    )
    parser.add_argument(
        "--ablations", action="store_true", help="also a 3-layer student with alpha 1"
    )
    parser.add_argument(
        "--baseline-init", default="first", help="the no-teacher 3-layer baseline's layers"
    )
    parser.add_argument(
        "--augment",
        metavar="COPIES:EPOCHS",
        help="also 3-layer students trained with `bertfit distill --augment COPIES "
        "--epochs EPOCHS` (e.g. 4:2)",
    )
    parser.add_argument(
        "--layer-weight",
        type=float,
        metavar="B",
        help="also 3-layer students trained with `bertfit distill --layer-weight B`",
    )
    parser.add_argument(
        "--token-weight",
        type=float,
        metavar="W",
        help="also 3-layer students trained with `bertfit distill --token-weight W`",
    )
    parser.add_argument("--max-steps", type=int, help="cap every run's steps (a smoke run)")
    parser.add_argument("--train-threads", type=int, help="torch threads for training")
    parser.add_argument("--threads", type=int, default=2, help="threads for throughput")
    parser.add_argument("--latency-threads", type=int, default=1, help="threads for latency")
    parser.add_argument(
        "--speed-reps", type=int, default=3, help="alternated speed measurements per export"
    )
    parser.add_argument(
        "--quality-only", action="store_true", help="train and score the runs, measure no speed"
    )
    parser.add_argument("--output", default=str(REPO / "bench" / "results" / "distill.json"))
    args = parser.parse_args()
    if args.train_threads:
        torch.set_num_threads(args.train_threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    runs, architectures = train_everything(args, work)
    models = {name: quality(model_runs) for name, model_runs in runs.items()}
    if args.quality_only:
        speeds, checks = {}, {}
        print("\n" + quality_table(models) + "\n")
    else:
        speeds = measure_speeds(args, architectures)
        # Every 3-layer variant has the 3-layer student's architecture, so its speed.
        variants = ["student-L3"] + [name for name, _, _ in three_layer_variants(args)]
        checks = {name: targets(models, speeds, name) for name in variants}
        print("\n" + quality_table(models) + "\n\n" + speed_table(speeds) + "\n")
        print(json.dumps(checks, indent=2))
    record = {
        "models": models,
        "speed": speeds,
        "targets": checks,
        "settings": vars(args),
        "versions": {"torch": torch.__version__},
        **machine_and_load(),
    }
    write_record(Path(args.output), record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
