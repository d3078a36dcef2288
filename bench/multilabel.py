"""Multi-label classification measured on real text: quality, and cost per example against the
single-label path on the same texts (issue 28, point 6).

The data set is built at run time from GLUE's SST-2 (movie-review sentences and phrases) into
the work directory, never into the repository. Each text gets the labels below; all but
``positive`` are read off the words, so a reader can check every row by eye (the rules are
lexical on purpose: what is measured is the multi-label machinery, not how hard the labels are).
Texts are SST-2's own tokenization, lower-cased and split on spaces:

* ``positive``: SST-2's own sentiment label is 1 (the one label that is not lexical);
* ``negation``: a word in :data:`NEGATION` (not, no, never, n't, nothing, without, ...);
* ``comparison``: a word in :data:`COMPARISON` (more, less, than, most, better, worst, ...);
* ``number``: a word holding a digit, or a word in :data:`NUMBER_WORDS` (one, two, ... first);
* ``first_person``: a word in :data:`FIRST_PERSON` (i, me, my, we, us, our, myself);
* ``question``: the word ``?`` (rare: about 0.5% of training rows, 1.4% of dev).

A row may have none of them (an empty list). ``train.jsonl`` holds ``--train-rows`` SST-2
training rows of at least ``--min-words`` words (drawn with ``--seed``); SST-2's dev set is
split by position: even rows are the run's dev file (``dev.jsonl``: best epoch, temperature and
thresholds are fitted there), odd rows are ``heldout.jsonl``, on which the fitted thresholds are
scored against 0.5 (on the dev file itself they would be scored on what they were fitted to).
Prediction speed is timed on SST-2's test sentences (no labels needed).

Steps (each skipped when its output is already in the work directory, so a killed run resumes):

1. build the files and print the label frequencies;
2. train, alternated over ``--reps`` repetitions (ABBA order), the multi-label model
   (``--label tags``) and the single-label one (``--label sentiment``: SST-2's own label as a
   2-class column) on the same texts with ``bertfit train``'s default recipe (``--epochs`` and
   the row count are the only budget settings), each run in its own process;
3. score the first multi-label run on the held-out half: micro and macro F1 and each label's
   F1 at 0.5 and at the fitted thresholds;
4. time ``TextClassifier.predict`` of both first runs' models on the same test sentences,
   alternated over ``--predict-reps`` repetitions.

Training cost per example is the time in optimizer steps (``timings.json``'s "first step" and
"training steps"; evaluations, checkpoints and start-up excluded) over the examples trained;
the figures are medians over the repetitions, and the ratio multi / single is the median of
each repetition's ratio. The target: multi-label costs no more than 5% more per example.

    .venv/bin/python bench/multilabel.py [--work DIR] [--train-rows 2000] [--epochs 2]
        [--reps 3] [--predict-reps 5] [--threads 2]

Writes ``bench/results/multilabel.json`` and prints a table. Smoke test (seconds, no figures
worth keeping): ``--train-rows 200 --max-steps 5 --reps 1 --predict-reps 1 --work /tmp/x
--output /tmp/x/multilabel.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

NEGATION = frozenset(
    {"not", "no", "never", "n't", "nothing", "nobody", "none", "neither", "nor", "without",
     "cannot"}
)  # fmt: skip
COMPARISON = frozenset(
    {"more", "less", "than", "most", "least", "better", "worse", "best", "worst", "rather"}
)
NUMBER_WORDS = frozenset(
    {"one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
     "twelve", "twenty", "hundred", "thousand", "million", "dozen", "first", "second", "third"}
)  # fmt: skip
FIRST_PERSON = frozenset({"i", "me", "my", "we", "us", "our", "myself"})
LABELS = ("positive", "negation", "comparison", "number", "first_person", "question")
VARIANTS = ("multi", "single")


def labels_of(text: str, sentiment: int) -> list[str]:
    """The labels of one SST-2 row, by the rules in the module docstring."""
    words = set(text.lower().split())
    chosen = {
        "positive": sentiment == 1,
        "negation": bool(words & NEGATION),
        "comparison": bool(words & COMPARISON),
        "number": bool(words & NUMBER_WORDS) or any(re.search(r"\d", w) for w in words),
        "first_person": bool(words & FIRST_PERSON),
        "question": "?" in words,
    }
    return [name for name in LABELS if chosen[name]]


def read_sst2(path: Path, labelled: bool = True) -> list[tuple[str, int | None]]:
    """(sentence, label) rows of an SST-2 file (label None in the test file)."""
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [
            (row["sentence"].strip(), int(row["label"]) if labelled else None) for row in reader
        ]


def write_jsonl(path: Path, rows: list[tuple[str, int]]) -> None:
    lines = []
    for text, sentiment in rows:
        record = {
            "text": text,
            "tags": labels_of(text, sentiment),
            "sentiment": "positive" if sentiment else "negative",
        }
        lines.append(json.dumps(record) + "\n")
    temporary = path.with_suffix(".tmp")
    temporary.write_text("".join(lines), encoding="utf-8")
    temporary.replace(path)


def build_data(args, data: Path) -> dict:
    """Step 1: train/dev/held-out files and the test sentences; the label frequencies."""
    sst2 = Path(args.data_dir) / "SST-2"
    if not (data / "heldout.jsonl").is_file():
        data.mkdir(parents=True, exist_ok=True)
        train = [
            row for row in read_sst2(sst2 / "train.tsv") if len(row[0].split()) >= args.min_words
        ]
        random.Random(args.seed).shuffle(train)
        dev = read_sst2(sst2 / "dev.tsv")
        write_jsonl(data / "train.jsonl", train[: args.train_rows])
        write_jsonl(data / "dev.jsonl", dev[0::2])
        write_jsonl(data / "heldout.jsonl", dev[1::2])
    frequencies = {}
    for split in ("train", "dev", "heldout"):
        records = [json.loads(line) for line in (data / f"{split}.jsonl").open(encoding="utf-8")]
        counts = {name: sum(name in r["tags"] for r in records) for name in LABELS}
        counts["(none)"] = sum(not r["tags"] for r in records)
        frequencies[split] = {"rows": len(records), "positives": counts}
    return frequencies


#: The settings whose change makes a work directory's data and runs another experiment's.
STAMPED = ("data_dir", "train_rows", "min_words", "epochs", "max_steps", "seed", "threads")


def check_work_dir(args, work: Path) -> None:
    """Refuse a work directory left by a run with other settings (its files would be reused)."""
    stamp = {key: getattr(args, key) for key in STAMPED}
    path = work / "settings.json"
    if path.is_file():
        before = json.loads(path.read_text())
        if before != stamp:
            raise SystemExit(
                f"{work} holds a run with other settings ({before}); give another --work or "
                "remove it"
            )
        print(f"resuming in {work}: finished steps are kept")
        return
    work.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stamp) + "\n")


def print_frequencies(frequencies: dict) -> None:
    splits = list(frequencies)
    print("label frequencies (rows with the label, share):")
    print(
        f"  {'label':<14}"
        + "".join(f"{s + ' (' + str(frequencies[s]['rows']) + ')':>20}" for s in splits)
    )
    for name in (*LABELS, "(none)"):
        cells = []
        for split in splits:
            count, rows = frequencies[split]["positives"][name], frequencies[split]["rows"]
            cells.append(f"{count:>10} {count / rows:>7.1%}  ")
        print(f"  {name:<14}" + "".join(cells))


def train_command(args, data: Path, run: Path, variant: str) -> list[str]:
    label = "tags" if variant == "multi" else "sentiment"
    command = [
        sys.executable, "-m", "bertfit", "train",
        "--train", str(data / "train.jsonl"), "--dev", str(data / "dev.jsonl"),
        "--text-a", "text", "--label", label, "--epochs", str(args.epochs),
        "--seed", str(args.seed), "--output", str(run), "--quiet", "--overwrite",
    ]  # fmt: skip
    if args.max_steps:
        command += ["--max-steps", str(args.max_steps)]
    return command


def _environment(threads: int) -> dict:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO / "src"), environment.get("PYTHONPATH")])
    )
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        environment[name] = str(threads)
    return environment


def train_all(args, data: Path, runs: Path) -> dict[str, list[dict]]:
    """Step 2: the training runs, alternated; each finished run is kept and not redone."""
    figures: dict[str, list[dict]] = {variant: [] for variant in VARIANTS}
    for rep in range(1, args.reps + 1):
        order = VARIANTS if rep % 2 else VARIANTS[::-1]  # ABBA: drifts hit both alike
        for variant in order:
            run = runs / f"{variant}-{rep}"
            if not (run / "results.json").is_file():
                command = train_command(args, data, run, variant)
                log = runs / f"{variant}-{rep}.log"
                runs.mkdir(parents=True, exist_ok=True)
                with open(log, "w", encoding="utf-8") as out:
                    done = subprocess.run(
                        command,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        env=_environment(args.threads),
                    )
                if done.returncode != 0:
                    raise SystemExit(f"training failed ({' '.join(command)}); see {log}")
            figures[variant].append(run_figures(run))
            seconds = figures[variant][-1]["step_seconds_per_example"] * 1e3
            print(
                f"  rep {rep}: {variant:6s} trained, {seconds:.2f} ms per example in steps",
                flush=True,
            )
    return figures


def run_figures(run: Path) -> dict:
    """A finished run's step time per example, whole-run wall time, and best record."""
    timings = json.loads((run / "timings.json").read_text())
    results = json.loads((run / "results.json").read_text())
    config = json.loads((run / "config.json").read_text())
    phases = timings["phases"]
    steps = results["steps"]
    step_seconds = sum(
        phases.get(name, {}).get("seconds", 0.0) for name in ("first step", "training steps")
    )
    train_rows = results["examples"]["train"]
    epochs = config["trainer"]["epochs"]
    batch = config["trainer"]["batch_size"]
    # Examples trained: every row each epoch, or steps x batch when max_steps cut the run short.
    examples = min(train_rows * epochs, steps * batch)
    return {
        "run": str(run),
        "steps": steps,
        "examples_trained": examples,
        "step_seconds": step_seconds,
        "step_seconds_per_example": step_seconds / examples,
        "total_seconds": timings["total_seconds"],
        "best": results["best"],
        "calibration": results.get("calibration"),
    }


def heldout_scores(run: Path, heldout: Path) -> dict:
    """Step 3: micro/macro F1 and each label's F1 on the held-out half, at 0.5 and fitted."""
    import numpy as np

    from bertfit.inference import TextClassifier
    from bertfit.probabilities import chosen_labels
    from bertfit.train.metrics import macro_f1, micro_f1, per_label_f1

    classifier = TextClassifier.from_pretrained(run / "model")
    names = classifier.info.label_names
    records = [json.loads(line) for line in heldout.open(encoding="utf-8")]
    gold = np.array([[name in r["tags"] for name in names] for r in records])
    logits = classifier.logits([[r["text"] for r in records]])
    temperature, thresholds = classifier.temperature, classifier.thresholds
    scores = {"examples": len(records), "thresholds": dict(zip(names, map(float, thresholds)))}
    for key, cut in (("at_0.5", None), ("fitted", thresholds)):
        chosen = chosen_labels(logits, temperature, cut)
        scores[key] = {
            "micro_f1": micro_f1(chosen, gold),
            "macro_f1": macro_f1(chosen, gold),
            "per_label_f1": dict(zip(names, map(float, per_label_f1(chosen, gold)))),
        }
    scores["support"] = dict(zip(names, map(int, gold.sum(axis=0))))
    return scores


def prediction_speed(args, runs: dict[str, Path], texts: list[str]) -> dict:
    """Step 4: ``TextClassifier.predict`` seconds per example of each model, alternated."""
    from bertfit.inference import TextClassifier

    models = {
        variant: TextClassifier.from_pretrained(run / "model") for variant, run in runs.items()
    }
    for model in models.values():  # warm-up: first-call allocations out of the timings
        model.predict([texts[:64]])
    seconds: dict[str, list[float]] = {variant: [] for variant in models}
    for rep in range(1, args.predict_reps + 1):
        order = VARIANTS if rep % 2 else VARIANTS[::-1]
        for variant in order:
            started = time.perf_counter()
            models[variant].predict([texts])
            seconds[variant].append((time.perf_counter() - started) / len(texts))
        print(
            f"  rep {rep}: predict "
            + ", ".join(f"{v} {seconds[v][-1] * 1e3:.3f} ms" for v in VARIANTS)
            + " per example",
            flush=True,
        )
    ratios = [m / s for m, s in zip(seconds["multi"], seconds["single"])]
    return {
        "texts": len(texts),
        "seconds_per_example": seconds,
        "median_seconds_per_example": {v: statistics.median(s) for v, s in seconds.items()},
        "multi_over_single_median": statistics.median(ratios),
    }


def training_speed(figures: dict[str, list[dict]]) -> dict:
    per_example = {v: [f["step_seconds_per_example"] for f in runs] for v, runs in figures.items()}
    ratios = [m / s for m, s in zip(per_example["multi"], per_example["single"])]
    return {
        "step_seconds_per_example": per_example,
        "median_step_seconds_per_example": {
            v: statistics.median(s) for v, s in per_example.items()
        },
        "multi_over_single_median": statistics.median(ratios),
    }


def print_report(report: dict) -> None:
    scores = report["heldout"]
    print(f"\nmulti-label quality on the held-out half of SST-2 dev ({scores['examples']} rows):")
    print(f"  {'':<14}{'support':>8}{'F1 at 0.5':>11}{'F1 fitted':>11}{'threshold':>11}")
    for name in scores["support"]:
        print(
            f"  {name:<14}{scores['support'][name]:>8}"
            f"{scores['at_0.5']['per_label_f1'][name]:>11.4f}"
            f"{scores['fitted']['per_label_f1'][name]:>11.4f}{scores['thresholds'][name]:>11.3f}"
        )
    for key in ("micro_f1", "macro_f1"):
        print(f"  {key:<22}{scores['at_0.5'][key]:>11.4f}{scores['fitted'][key]:>11.4f}")
    single = {
        k: round(v, 4) for k, v in report["single_label_best"].items() if k.startswith("dev_")
    }
    print(f"  (the single-label run on SST-2's own label, best on the dev half: {single})")
    train, predict = report["training_speed"], report["prediction_speed"]
    print("\ncost per example (medians; multi / single is the median of the paired ratios):")
    print(f"  {'':<26}{'multi':>10}{'single':>10}{'multi/single':>14}")
    for title, figures, key in (
        ("training (ms, in steps)", train, "median_step_seconds_per_example"),
        ("prediction (ms, predict)", predict, "median_seconds_per_example"),
    ):
        medians = figures[key]
        print(
            f"  {title:<26}{medians['multi'] * 1e3:>10.3f}{medians['single'] * 1e3:>10.3f}"
            f"{figures['multi_over_single_median']:>14.3f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "glue"))
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "bertfit-multilabel"))
    parser.add_argument("--train-rows", type=int, default=2000)
    parser.add_argument("--min-words", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-steps", type=int, help="cut each run short (smoke tests)")
    parser.add_argument("--reps", type=int, default=3, help="training runs of each kind")
    parser.add_argument("--predict-reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", default=str(REPO / "bench" / "results" / "multilabel.json"))
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    import torch

    torch.set_num_threads(args.threads)  # the held-out scoring and the prediction timings
    work = Path(args.work)
    data, runs = work / "data", work / "runs"
    started = time.perf_counter()
    check_work_dir(args, work)
    print(f"1. data in {data}")
    frequencies = build_data(args, data)
    print_frequencies(frequencies)
    print(f"2. training, {args.reps} repetitions of each, alternated ({runs})")
    figures = train_all(args, data, runs)
    print("3. scoring the held-out half")
    heldout = heldout_scores(runs / "multi-1", data / "heldout.jsonl")
    print("4. prediction speed")
    texts = [
        text for text, _ in read_sst2(Path(args.data_dir) / "SST-2" / "test.tsv", labelled=False)
    ]
    predict = prediction_speed(args, {v: runs / f"{v}-1" for v in VARIANTS}, texts)
    report = {
        "settings": {k: v for k, v in vars(args).items() if k not in ("output",)},
        "commands": {v: " ".join(train_command(args, data, runs / f"{v}-N", v)) for v in VARIANTS},
        "labels": list(LABELS),
        "frequencies": frequencies,
        "heldout": heldout,
        "dev_calibration": figures["multi"][0]["calibration"],
        "multi_label_best": figures["multi"][0]["best"],
        "single_label_best": figures["single"][0]["best"],
        "runs": figures,
        "training_speed": training_speed(figures),
        "prediction_speed": predict,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "bench_seconds": time.perf_counter() - started,
    }
    print_report(report)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {output} ({report['bench_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
