"""The ``bertfit`` command: ``train``, ``evaluate`` and ``predict``.

User mistakes (a missing file, a bad row, an invalid flag) end with one line on stderr and a
non-zero exit; only bugs show a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import bertfit
from bertfit.errors import BertfitError, ConfigError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _add_train(commands) -> None:
    parser = commands.add_parser("train", help="fine-tune a pretrained encoder on a task")
    parser.add_argument("--task", default="mrpc", help="task name (default: mrpc)")
    parser.add_argument("--output", required=True, help="run directory to write")
    parser.add_argument("--model", help="model directory or preset (default: packaged MiniLM)")
    parser.add_argument("--data-dir", help="directory with the task's GLUE files")
    parser.add_argument("--epochs", type=_positive_int, default=3)
    parser.add_argument("--batch-size", type=_positive_int, default=32)
    parser.add_argument("--learning-rate", type=_positive_float, help="peak learning rate")
    parser.add_argument("--max-seq-length", type=_positive_int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-steps", type=_positive_int, help="stop after this many steps")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing run directory's contents"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=_run_train)


def _add_evaluate(commands) -> None:
    parser = commands.add_parser("evaluate", help="metrics of a run's best model on a split")
    parser.add_argument("run", help="run directory (or a saved model directory)")
    parser.add_argument(
        "--split",
        default="dev",
        help="split to evaluate: dev (all dev files of the task), train, or a file's split name "
        "such as dev_mismatched",
    )
    parser.add_argument("--data-dir", help="GLUE directory (default: the one the run used)")
    parser.add_argument("--batch-size", type=_positive_int, default=64)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=_run_evaluate)


def _add_predict(commands) -> None:
    parser = commands.add_parser("predict", help="classify sentence pairs with a run's model")
    parser.add_argument("run", help="run directory (or a saved model directory)")
    parser.add_argument("--sentence1", help="first sentence")
    parser.add_argument("--sentence2", help="second sentence (pair tasks)")
    parser.add_argument("--input", help="TSV (one example per line) or JSON lines file")
    parser.add_argument("--batch-size", type=_positive_int, default=64)
    parser.set_defaults(handler=_run_predict)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``bertfit`` command."""
    parser = argparse.ArgumentParser(
        prog="bertfit", description="Fine-tune BERT-family encoders into text classifiers."
    )
    parser.add_argument("--version", action="version", version=f"bertfit {bertfit.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(commands)
    _add_evaluate(commands)
    _add_predict(commands)
    return parser


def _run_train(args) -> int:
    from bertfit.train.config import DEFAULT_LEARNING_RATE, RunConfig, TrainerConfig
    from bertfit.train.optim import OptimizationConfig
    from bertfit.train.run import train_run

    output = Path(args.output)
    if (output / "config.json").exists() and not args.overwrite:
        raise ConfigError(f"{output} already holds a run; choose another --output or --overwrite")
    config = RunConfig(
        task=args.task,
        model=args.model,
        data_dir=args.data_dir,
        max_seq_length=args.max_seq_length,
        trainer=TrainerConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            max_steps=args.max_steps,
            seed=args.seed,
        ),
        optimizer=OptimizationConfig(learning_rate=args.learning_rate or DEFAULT_LEARNING_RATE),
    )
    result = train_run(config, output, progress=False if args.quiet else None)
    best = result.best or {}
    metrics = {k[4:]: v for k, v in best.items() if k.startswith("dev_")}
    print(f"best model (epoch {best.get('epoch')}): {json.dumps(metrics)} -> {output / 'model'}")
    return 0


def _model_dir(run: str) -> Path:
    run_dir = Path(run)
    if (run_dir / "model" / "bertfit.json").is_file():
        return run_dir / "model"
    if (run_dir / "bertfit.json").is_file():
        return run_dir
    raise ConfigError(f"{run_dir}: not a bertfit run (no model/bertfit.json) or model directory")


def _run_evaluate(args) -> int:
    from bertfit.config import read_json
    from bertfit.data.readers import read_glue_split
    from bertfit.data.sources import resolve_task_dir
    from bertfit.data.tasks import get_task
    from bertfit.inference import TextClassifier
    from bertfit.train.trainer import evaluate_examples

    model_dir = _model_dir(args.run)
    classifier = TextClassifier.from_pretrained(model_dir)
    task = get_task(classifier.info.task)
    data_dir = args.data_dir
    run_config = model_dir.parent / "config.json"
    if data_dir is None and run_config.is_file():
        data_dir = read_json(run_config).get("data_dir")
    splits = task.dev_splits if args.split == "dev" else (args.split,)
    metrics: dict[str, float] = {}
    for split in splits:
        task_dir = resolve_task_dir(task, data_dir, split)
        examples = read_glue_split(task_dir / task.split_file(split), task, split)
        if examples.labels is None:
            raise ConfigError(f"split {split!r} has no labels to evaluate against; use predict")
        scores = evaluate_examples(classifier, task, examples, args.batch_size)
        # One dev file: plain metric names; several (MNLI): named after the file.
        prefix = "" if len(splits) == 1 else split.removeprefix("dev_") + "_"
        metrics.update({prefix + name: value for name, value in scores.items()})
        if not args.json:
            print(f"{task.name} {split} ({len(examples)} examples)")
            for name, value in scores.items():
                print(f"  {name}: {value:.4f}")
    if args.json:
        print(json.dumps(metrics))
    return 0


def _run_predict(args) -> int:
    from bertfit.data.readers import read_prediction_input
    from bertfit.inference import TextClassifier

    classifier = TextClassifier.from_pretrained(_model_dir(args.run))
    names = tuple(classifier.info.input_names)
    if args.input:
        if args.sentence1 or args.sentence2:
            raise ConfigError("give either --input or --sentence1/--sentence2, not both")
        columns = read_prediction_input(args.input, names)
    else:
        given = [args.sentence1, args.sentence2][: len(names)]
        if any(text is None for text in given):
            flags = " and ".join(f"--{name}" for name in names)
            raise ConfigError(f"give {flags}, or --input FILE")
        columns = [[text] for text in given]
    for row in classifier.predict(columns, args.batch_size):
        print(json.dumps(row))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bertfit`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except BertfitError as error:
        print(f"bertfit: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except FloatingPointError as error:
        print(f"bertfit: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bertfit: interrupted; files in the run directory are complete", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
