"""The ``bertfit`` command: ``train``, ``distill``, ``evaluate``, ``predict`` and the rest.

User mistakes (a missing file, a bad row, an invalid flag) end with one line on stderr and a
non-zero exit; only bugs show a traceback.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

import bertfit
from bertfit import progress
from bertfit.config import write_json
from bertfit.data.readers import read_prediction_input
from bertfit.errors import BertfitError, ConfigError, TrainingInterrupted
from bertfit.paths import BERTFIT_FILE, find_model_dir
from bertfit.serve import DEFAULT_HOST, DEFAULT_PORT, ServeConfig
from bertfit.train.config import (
    DEFAULT_STUDENT_LAYERS,
    DistillConfig,
    RunConfig,
    TrainerConfig,
    UserDataConfig,
)
from bertfit.train.config_file import (
    describe_keys,
    dump_config,
    load_run_config,
    parse_overrides,
)
from bertfit.train.phases import PhaseTimer, process_age
from bertfit.train.recipes import TASK_RECIPES

# Every default a help text names is read from the config dataclasses, never repeated here.
_RUN = RunConfig()
_TRAINER = _RUN.trainer
_DATA = UserDataConfig()
_DISTILL = DistillConfig()
_EVAL_BATCH_SIZE = TrainerConfig.eval_batch_size

EXIT_USER_ERROR = 2
# bertfit.bulk.engine.DEFAULT_CHUNK_ROWS, repeated so that `bertfit --help` needs no pyarrow
# (tests/test_bulk.py checks that the two agree).
BULK_CHUNK_ROWS = 10_000
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a tool whose reader left


def _whole_number(text: str, minimum: int, requirement: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be {requirement}, got {value}")
    return value


def _positive_int(text: str) -> int:
    return _whole_number(text, 1, "positive")


def _non_negative_int(text: str) -> int:
    return _whole_number(text, 0, "0 or more")


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _positive_float(text: str) -> float:
    value = _number(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = _number(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _decay_factor(text: str) -> float:
    value = _number(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def _recipe_default(key: str, fallback) -> str:
    """A help text's default for a key the task recipes set: each recipe's value, then the
    config's own for tasks without one."""
    values = ", ".join(f"{task} {recipe[key]:g}" for task, recipe in TASK_RECIPES.items())
    return f"(default: the task's recipe: {values}; otherwise {fallback:g})"


def _add_train(commands) -> None:
    parser = commands.add_parser("train", help="fine-tune a pretrained encoder on a task")
    _add_run_arguments(
        parser,
        output="run directory to write (required unless --resume)",
        seeds="comma-separated seeds (e.g. 1,2,3): one run each in OUTPUT/seed-N and a summary",
    )
    parser.set_defaults(handler=_run_train)


def _add_run_arguments(parser, output: str, seeds: str) -> None:
    """The flags of a training run, shared by ``train`` and ``tune`` (whose trials are runs)."""
    # Flags default to None: only a flag given on the command line overrides the --config file
    # (and, for tune, leaves the search).
    parser.add_argument("--task", help=f"task name (default: {_RUN.task})")
    parser.add_argument("--output", help=output)
    parser.add_argument(
        "--model",
        help="preset (`bertfit models`), model directory, TensorFlow checkpoint or SavedModel, "
        "or Hugging Face ORG/NAME (default: packaged MiniLM)",
    )
    parser.add_argument("--data-dir", help="directory with the task's GLUE files")
    _add_user_data_arguments(parser)
    parser.add_argument(
        "--epochs", type=_positive_int, help=_recipe_default("trainer.epochs", _TRAINER.epochs)
    )
    parser.add_argument(
        "--batch-size", type=_positive_int, help=f"(default: {_TRAINER.batch_size})"
    )
    parser.add_argument(
        "--learning-rate",
        type=_positive_float,
        help="peak learning rate "
        + _recipe_default("optimizer.learning_rate", _RUN.optimizer.learning_rate),
    )
    parser.add_argument(
        "--layer-decay",
        type=_decay_factor,
        metavar="D",
        help="each encoder layer learns at D x the rate of the layer above; the head at the "
        f"full rate, the embeddings lowest (default: {_RUN.optimizer.layer_decay:g}, off)",
    )
    parser.add_argument(
        "--reinit-layers",
        type=_non_negative_int,
        metavar="K",
        help="re-initialize the top K encoder layers and the pooler before training "
        f"(default: {_RUN.reinit_layers}, off)",
    )
    parser.add_argument(
        "--max-seq-length", type=_positive_int, help=f"(default: {_RUN.max_seq_length})"
    )
    parser.add_argument(
        "--window-stride",
        type=_positive_int,
        help="split texts longer than --max-seq-length into windows this many tokens apart "
        "(default: truncate them)",
    )
    parser.add_argument(
        "--truncator",
        choices=["round_robin", "waterfall"],
        help="how pairs longer than --max-seq-length are cut: round_robin (default) shares "
        "the room token by token, waterfall keeps the first text whole first",
    )
    parser.add_argument("--seed", type=int, help=f"(default: {_TRAINER.seed})")
    parser.add_argument("--max-steps", type=_positive_int, help="stop after this many steps")
    _add_evaluation_arguments(parser)
    parser.add_argument(
        "--class-weights",
        type=_class_weights,
        metavar="balanced|NAME=W,...",
        help="weigh the labels in the loss: balanced (inverse frequency in the training set; "
        "multi-label: each label's negatives / positives) or weights by label name, e.g. "
        "yes=3,no=1 (others 1); default: none",
    )
    parser.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "fp16"],
        help="auto (default): bf16 autocast where the device does bf16 natively, else fp32",
    )
    parser.add_argument("--device", help="auto (default: CUDA if visible), cpu, cuda or cuda:N")
    parser.add_argument("--seeds", type=_seed_list, help=seeds)
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing run directory's contents"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars; a line per epoch")
    _add_config_arguments(parser)
    parser.add_argument(
        "--tensorboard", action="store_true", help="also log to TensorBoard in RUN/tensorboard"
    )
    _add_scale_arguments(parser)


#: train's flags that continue, replace or shard one run: tune refuses them (with a line saying
#: what to do instead) and so does not offer them in its help.
_TUNE_REFUSED = ("--resume", "--resume-if-exists", "--overwrite", "--fsdp")


def _add_tune(commands) -> None:
    parser = commands.add_parser(
        "tune", help="search for a better recipe: training runs as trials of an Optuna study"
    )
    _add_run_arguments(
        parser,
        output="folder of the search: study.db, trials/, trials.csv, best.yaml, best/",
        seeds="score each trial by the mean of its runs on these seeds, e.g. 1,2 "
        "(default: one run on --seed)",
    )
    for flag in _TUNE_REFUSED:
        parser._option_string_actions[flag].help = argparse.SUPPRESS
    group = parser.add_argument_group(
        "the search (a flag above fixes its key for every trial: it is not searched)"
    )
    group.add_argument(
        "--trials",
        type=_positive_int,
        metavar="N",
        help="finished (complete or pruned) trials the study should hold; the same command "
        "again continues to N (default: 20 unless --timeout)",
    )
    group.add_argument(
        "--timeout",
        type=_duration,
        metavar="TIME",
        help="start no trial after this long, e.g. 90m or 2h (the one under way finishes)",
    )
    group.add_argument(
        "--space",
        metavar="FILE",
        help="YAML of dotted config keys with {low, high[, log]} or {choices: [...]} "
        "(default: learning rate, epochs, warmup, weight decay, batch size, layer decay, "
        "re-initialized layers)",
    )
    group.add_argument(
        "--storage",
        metavar="URL",
        help="database of a study shared between processes and machines, e.g. "
        "postgresql://USER:PASSWORD@HOST/DB (default: OUTPUT/study.db, SQLite)",
    )
    group.add_argument("--study", metavar="NAME", help="study name (default: OUTPUT's name)")
    parser.set_defaults(handler=_run_tune)


def _duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    scale = units.get(text.strip()[-1:].lower())
    try:
        number = float(text.strip()[:-1] if scale else text)
    except ValueError:
        number = float("nan")
    if not 0 < number < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a time like 90m, 2h or 3600, got {text!r}")
    return number * (scale or 1)


def _add_evaluation_arguments(parser) -> None:
    group = parser.add_argument_group("evaluations and early stopping")
    group.add_argument(
        "--eval-every-steps",
        type=_positive_int,
        metavar="N",
        help="also evaluate on dev (and keep the best model) every N steps, not only after "
        "each epoch (default: per epoch)",
    )
    group.add_argument(
        "--main-metric",
        metavar="NAME",
        help="the dev metric that picks the best model and that early stopping watches, one "
        "of the task's (default: its first: GLUE's own, micro_f1 for multi-label)",
    )
    group.add_argument(
        "--early-stopping-patience",
        type=_positive_int,
        metavar="N",
        help="stop after N evaluations in a row without the main metric improving; the best "
        "model is kept (default: train to the end)",
    )
    group.add_argument(
        "--early-stopping-delta",
        type=_non_negative_float,
        metavar="D",
        help="an improvement must beat the best before it by more than D "
        f"(default: {_TRAINER.early_stopping_delta:g})",
    )


def _add_scale_arguments(parser) -> None:
    group = parser.add_argument_group("checkpoints, accumulation, several processes")
    group.add_argument(
        "--resume",
        metavar="RUN",
        help="continue RUN from its latest complete checkpoint, with its own saved settings",
    )
    group.add_argument(
        "--resume-if-exists",
        action="store_true",
        help="with --output RUN: continue RUN from its latest checkpoint if it holds one, "
        "else start it (for jobs restarted with the same command: torchrun --max-restarts)",
    )
    group.add_argument(
        "--checkpoint-every",
        type=_positive_int,
        metavar="N",
        help="also checkpoint every N steps (always: at each epoch's end) in RUN/checkpoints",
    )
    group.add_argument(
        "--keep-checkpoints",
        type=_positive_int,
        metavar="K",
        help=f"keep the last K (default: {_TRAINER.keep_checkpoints})",
    )
    group.add_argument(
        "--grad-accum-steps",
        type=_positive_int,
        metavar="K",
        help="sum K micro-batches of --batch-size into each update "
        f"(default: {_TRAINER.grad_accum_steps})",
    )
    group.add_argument(
        "--fsdp",
        action="store_true",
        help="under torchrun, shard the model between processes (FSDP) instead of DDP",
    )


def _add_user_data_arguments(parser) -> None:
    group = parser.add_argument_group("your own data (instead of --task)")
    group.add_argument(
        "--train", help="training file: .csv, .tsv or .jsonl with a header, or .parquet"
    )
    group.add_argument("--dev", help="evaluation file in the same layout")
    group.add_argument("--text-a", help=f"column of the (first) text (default: {_DATA.text_a})")
    group.add_argument("--text-b", help="column of the second text, for pairs")
    group.add_argument("--label", help=f"column of the label (default: {_DATA.label})")
    group.add_argument("--labels", type=_name_list, help="label names in class order, a,b,c")
    group.add_argument(
        "--label-separator",
        metavar="SEP",
        help="multi-label CSV/TSV: what separates the names in one label field "
        f"(default: {_DATA.label_separator}; JSON lines hold an array)",
    )
    group.add_argument(
        "--label-columns",
        type=_column_list,
        metavar="A,B,...",
        help="multi-label: one 0/1 column per label instead of --label",
    )
    kind = group.add_mutually_exclusive_group()
    kind.add_argument("--regression", action="store_true", help="numeric targets (MSE loss)")
    kind.add_argument("--classification", action="store_true", help="labels are classes")
    kind.add_argument(
        "--multi-label",
        action="store_true",
        help="any number of labels per row, none included (sigmoid, binary cross-entropy); "
        "inferred from lists of labels unless a flag says",
    )


def _add_config_arguments(parser) -> None:
    parser.add_argument(
        "--config", help="run config: a .yaml/.json file, or a run directory to repeat"
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="dotted config overrides, e.g. optimizer.learning_rate=3e-5 trainer.epochs=5",
    )


def _add_distill(commands) -> None:
    parser = commands.add_parser(
        "distill", help="train a smaller, faster student of a finished run (a run of its own)"
    )
    parser.add_argument("run", help="the teacher: a finished run directory")
    parser.add_argument("--output", required=True, help="run directory to write for the student")
    parser.add_argument(
        "--layers", type=int, default=DEFAULT_STUDENT_LAYERS,
        help="the student's layers, fewer than the teacher's (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--init",
        default=_DISTILL.init,
        help="which teacher layers the student starts from: spread (every L/k-th, ending with "
        "the top one), first, last, or indices such as 0,2,4 (default: %(default)s)",
    )
    parser.add_argument(
        "--temperature", type=_positive_float, default=_DISTILL.temperature,
        help="softmax temperature of the teacher's and student's outputs (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--alpha", type=_unit_float, default=_DISTILL.alpha,
        help="weight of the gold-label loss; 1 - alpha weighs the teacher's (default: "
        "%(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--augment", type=_non_negative_int, default=_DISTILL.augment, metavar="N",
        help="also train on N copies of each training input with some words replaced by near "
        "neighbours, labelled by the teacher alone (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--augment-rate", type=_unit_float, default=_DISTILL.augment_rate, metavar="P",
        help="share of whole words each augmented copy replaces (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--layer-weight", type=_non_negative_float, default=_DISTILL.layer_weight, metavar="B",
        help="also match each student layer's [CLS] vector to its teacher layer's, with this "
        "weight (Patient KD; default: %(default)s, off)",
    )  # fmt: skip
    parser.add_argument(
        "--token-weight", type=_non_negative_float, default=_DISTILL.token_weight, metavar="W",
        help="also match every token's vector in each student layer to its teacher layer's, "
        "with this weight, running the teacher on each batch (TinyBERT; about 1.7x the "
        "training time; default: %(default)s, off)",
    )  # fmt: skip
    parser.add_argument("--epochs", type=_positive_int, help="(default: the teacher's)")
    parser.add_argument("--seed", type=int, help="(default: the teacher's)")
    parser.add_argument("--max-steps", type=_positive_int, help="stop after this many steps")
    _add_evaluation_arguments(parser)
    parser.add_argument("--learning-rate", type=_positive_float, help="(default: the teacher's)")
    parser.add_argument(
        "--precision", choices=["auto", "fp32", "bf16", "fp16"], help="(default: the teacher's)"
    )
    parser.add_argument("--data-dir", help="the task's GLUE files (default: the teacher's)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing --output entirely"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars; a line per epoch")
    parser.set_defaults(handler=_run_distill)


def _unit_float(text: str) -> float:
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def _run_distill(args) -> int:
    from bertfit.train.student_run import distill_run  # torch loads only for commands that train

    overrides = {
        "trainer.max_steps": args.max_steps,
        "trainer.eval_every_steps": args.eval_every_steps,
        "trainer.main_metric": args.main_metric,
        "trainer.early_stopping_patience": args.early_stopping_patience,
        "trainer.early_stopping_delta": args.early_stopping_delta,
        "optimizer.learning_rate": args.learning_rate,
        "trainer.precision": args.precision,
        "data_dir": args.data_dir,
    }
    result = distill_run(
        args.run,
        args.output,
        args.layers,
        init=args.init,
        temperature=args.temperature,
        alpha=args.alpha,
        augment=args.augment,
        augment_rate=args.augment_rate,
        layer_weight=args.layer_weight,
        token_weight=args.token_weight,
        seed=args.seed,
        epochs=args.epochs,
        overrides=[(key, value) for key, value in overrides.items() if value is not None],
        overwrite=args.overwrite,
        progress=False if args.quiet else None,
    )
    return _print_best(result, Path(args.output))


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
    parser.add_argument("--batch-size", type=_positive_int, default=_EVAL_BATCH_SIZE)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--report",
        action="store_true",
        help="also each label's precision, recall, F1 and support, their macro and weighted "
        "averages and the confusion matrix (--json: under the key 'report', per split; needs "
        "scikit-learn, the report extra)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=_run_evaluate)


def _add_predict(commands) -> None:
    parser = commands.add_parser("predict", help="classify sentence pairs with a run's model")
    parser.add_argument("run", help="run directory, saved model directory or exported model")
    parser.add_argument("--sentence1", help="first sentence")
    parser.add_argument("--sentence2", help="second sentence (pair tasks)")
    parser.add_argument(
        "--input",
        help="TSV (one example per line) or JSON lines file; with --output also CSV or Parquet, "
        "or a folder or glob of such files",
    )
    parser.add_argument("--batch-size", type=_positive_int, default=_EVAL_BATCH_SIZE)
    parser.add_argument(
        "--threads",
        type=_positive_int,
        help="model threads (default: one per core; --engine ray: per worker, default 1)",
    )
    parser.add_argument(
        "--raw-probabilities",
        action="store_true",
        help="softmax of the logits without the run's fitted temperature (default: calibrated)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    bulk = parser.add_argument_group(
        "bulk (--input with --output: in chunks, committed in parts; rerun to resume)"
    )
    bulk.add_argument("--output", help="predictions file: .jsonl, .csv or .parquet")
    bulk.add_argument("--text-a", help="column of the first text (default: the model's input)")
    bulk.add_argument("--text-b", help="column of the second text, for pairs")
    bulk.add_argument(
        "--keep", help="columns to copy through, comma-separated (default: every non-text one)"
    )
    bulk.add_argument("--logits", action="store_true", help="write the logits too")
    bulk.add_argument(
        "--on-error",
        choices=["fail", "skip"],
        default="fail",
        help="a row without its texts: stop (default) or write it to OUT's .rejects.jsonl",
    )
    bulk.add_argument("--overwrite", action="store_true", help="start over, replacing OUT")
    bulk.add_argument(
        "--chunk-rows",
        type=_positive_int,
        default=BULK_CHUNK_ROWS,
        help=f"rows per chunk and committed part (default: {BULK_CHUNK_ROWS})",
    )
    bulk.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: this process (default); ray: Ray Data, an exported model in each worker "
        "(the ray extra)",
    )
    bulk.add_argument("--ray-address", help="Ray cluster to run on (default: a local Ray)")
    bulk.add_argument(
        "--workers", type=_positive_int, default=2, help="--engine ray: predictor actors"
    )
    parser.set_defaults(handler=_run_predict)


def _add_calibrate(commands) -> None:
    parser = commands.add_parser(
        "calibrate", help="fit a run's softmax temperature on its dev set (done after training)"
    )
    parser.add_argument("run", help="run directory (or a saved model directory)")
    parser.add_argument("--data-dir", help="GLUE directory (default: the one the run used)")
    parser.add_argument("--batch-size", type=_positive_int, default=_EVAL_BATCH_SIZE)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=_run_calibrate)


def _add_explain(commands) -> None:
    parser = commands.add_parser(
        "explain", help="which words pushed the model toward its label (word attributions)"
    )
    parser.add_argument("source", help="run directory, saved model directory or exported model")
    parser.add_argument("--sentence1", help="first text")
    parser.add_argument("--sentence2", help="second text (pair tasks)")
    parser.add_argument(
        "--method",
        choices=["integrated_gradients", "occlusion"],
        help="default: integrated_gradients for a run, occlusion for an export (no gradients)",
    )
    parser.add_argument(
        "--steps", type=_positive_int, help="integrated gradients' path steps (default: 64)"
    )
    parser.add_argument(
        "--label",
        metavar="NAME",
        help="attribute toward this label (default: the predicted one; multi-label: the most "
        "probable)",
    )
    parser.add_argument("--json", action="store_true", help="print the explanation as JSON")
    parser.add_argument("--png", metavar="FILE", help="also draw the words as a heat map")
    parser.set_defaults(handler=_run_explain)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``bertfit`` command."""
    parser = argparse.ArgumentParser(
        prog="bertfit", description="Fine-tune BERT-family encoders into text classifiers."
    )
    parser.add_argument("--version", action="version", version=f"bertfit {bertfit.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(commands)
    _add_tune(commands)
    _add_distill(commands)
    _add_evaluate(commands)
    _add_predict(commands)
    _add_calibrate(commands)
    _add_explain(commands)
    _add_config(commands)
    _add_plot(commands)
    _add_inspect(commands)
    _add_deployment(commands)
    _add_convert(commands)
    _add_models(commands)
    return parser


def _train_flag_overrides(args) -> list[tuple[str, object]]:
    """The config keys set by ``train``'s flags, in the order they apply."""
    flags = {
        "task": args.task,
        "model": args.model,
        "data_dir": args.data_dir,
        "max_seq_length": args.max_seq_length,
        "window_stride": args.window_stride,
        "truncator": args.truncator,
        "trainer.epochs": args.epochs,
        "trainer.batch_size": args.batch_size,
        "trainer.seed": args.seed,
        "trainer.max_steps": args.max_steps,
        "trainer.eval_every_steps": args.eval_every_steps,
        "trainer.main_metric": args.main_metric,
        "trainer.early_stopping_patience": args.early_stopping_patience,
        "trainer.early_stopping_delta": args.early_stopping_delta,
        "trainer.class_weights": args.class_weights,
        "trainer.precision": args.precision,
        "trainer.device": args.device,
        "optimizer.learning_rate": args.learning_rate,
        "optimizer.layer_decay": args.layer_decay,
        "reinit_layers": args.reinit_layers,
        "logging.tensorboard": True if args.tensorboard else None,
        "trainer.checkpoint_every_steps": args.checkpoint_every,
        "trainer.keep_checkpoints": args.keep_checkpoints,
        "trainer.grad_accum_steps": args.grad_accum_steps,
        "trainer.parallel": "fsdp" if args.fsdp else None,
        "data.train_file": args.train,
        "data.dev_file": args.dev,
        "data.text_a": args.text_a,
        "data.text_b": args.text_b,
        "data.label": args.label,
        "data.label_names": args.labels,
        "data.label_separator": args.label_separator,
        "data.label_columns": args.label_columns,
        "data.task_type": _task_type_flag(args),
    }
    return [(key, value) for key, value in flags.items() if value is not None]


def _run_train(args) -> int:
    if args.resume is not None:
        return _resume_train(args)
    if args.output is None:
        raise ConfigError("give --output RUN (or --resume RUN to continue a run)")
    output = Path(args.output)
    if args.resume_if_exists and (args.overwrite or args.seeds):
        other = "--overwrite" if args.overwrite else "--seeds"
        raise ConfigError(f"--resume-if-exists does not go with {other}")
    if (output / "config.json").exists() and not (args.overwrite or args.resume_if_exists):
        raise ConfigError(
            f"{output} already holds a run; choose another --output, --overwrite, "
            "or --resume-if-exists to continue it"
        )
    # The file first, then the flags, then KEY=VALUE overrides: the last word wins.
    overrides = _train_flag_overrides(args) + parse_overrides(args.overrides)
    config = load_run_config(args.config, overrides)
    # torch loads only once the config is known to be good
    from bertfit.train.run import train_run, train_seeds

    progress = False if args.quiet else None
    if args.seeds:
        return _print_seed_summary(train_seeds(config, output, args.seeds, progress), output)
    phases = PhaseTimer()
    started = process_age()  # the interpreter, imports and this config: the job's start-up
    if started is not None:
        phases.add("start-up", started)
    result = train_run(
        config, output, progress=progress, phases=phases, resume_if_exists=args.resume_if_exists
    )
    return _print_best(result, output)


def _run_tune(args) -> int:
    given = [flag for flag in _TUNE_REFUSED if getattr(args, flag[2:].replace("-", "_"))]
    if given:
        raise ConfigError(
            f"tune does not take {given[0]}: the same command continues a stopped search; "
            "a new one needs another --output (or --study)"
        )
    if args.output is None:
        raise ConfigError("give --output DIR, the folder of the search")
    # Flags and KEY=VALUE overrides are fixed for every trial and left out of the search.
    fixed = _train_flag_overrides(args) + parse_overrides(args.overrides)
    config = load_run_config(args.config, fixed)
    from bertfit.tune import require_optuna  # no optuna yet: it names the extra when missing

    require_optuna()
    from bertfit.tune.study import TuneOptions, run_tune  # optuna and torch: only to tune

    options = TuneOptions(
        config=config,
        output=Path(args.output),
        fixed=[key for key, value in fixed],
        trials=args.trials,
        timeout=args.timeout,
        seeds=args.seeds,
        space=args.space,
        storage=args.storage,
        study=args.study,
        progress=False if args.quiet else None,
    )
    try:
        summary = run_tune(options)
    except KeyboardInterrupt as interrupted:  # TrainingInterrupted too: trials never resume
        print(
            "bertfit: interrupted; the trial under way is marked FAIL, and the same command "
            "continues the study",
            file=sys.stderr,
        )
        terminated = getattr(interrupted, "signum", None) == signal.SIGTERM
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    counts = ", ".join(f"{n} {state}" for state, n in sorted(summary.counts.items()))
    print(f"study {summary.study!r}: {counts or 'no trials'} ({summary.ran} run here)")
    if summary.best_number is not None:
        output = summary.output
        print(
            f"best: trial {summary.best_number}, {summary.best_value:.4f} -> "
            f"{output / 'best.yaml'}; trials: {output / 'trials.csv'}"
        )
    return 0


def _print_best(result, output: Path) -> int:
    from bertfit.train import distributed  # torch is loaded by now: training ran
    from bertfit.train.metrics import dev_metrics  # numpy: only for commands that print metrics

    if result is not None and distributed.current().is_main:
        best = result.best or {}
        metrics = dev_metrics(best)
        model = output / "model"
        print(f"best model (epoch {best.get('epoch')}): {json.dumps(metrics)} -> {model}")
    return 0


def _resume_train(args) -> int:
    # Everything but the run comes from RUN/config.json: other settings would change the run.
    given = [flag for flag, value in _train_flag_overrides(args)] + list(args.overrides)
    if args.config:
        given.append("--config")
    if args.seeds or args.overwrite or args.resume_if_exists:
        given.append(
            "--seeds" if args.seeds else "--overwrite" if args.overwrite else "--resume-if-exists"
        )
    if args.output is not None and Path(args.output).resolve() != Path(args.resume).resolve():
        given.append("--output")
    if given:
        raise ConfigError(
            f"--resume continues with the run's own saved settings; leave out {given[0]}"
        )
    from bertfit.train.run import resume_run  # torch loads only for commands that train

    progress = False if args.quiet else None
    return _print_best(resume_run(args.resume, progress=progress), Path(args.resume))


def _task_type_flag(args) -> str | None:
    for word in ("regression", "classification", "multi_label"):
        if getattr(args, word):
            return word
    return None


def _column_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"expected distinct column names like a,b, got {text!r}")
    return names


def _name_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if len(names) < 2 or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"expected distinct names like neg,pos, got {text!r}")
    return names


def _class_weights(text: str) -> str | dict[str, float]:
    if text.strip() == "balanced":
        return "balanced"
    weights: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise argparse.ArgumentTypeError(
                f"expected balanced or NAME=WEIGHT pairs like yes=3,no=1, got {text!r}"
            )
        weights[name.strip()] = _positive_float(value)
    return weights


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds like 1,2,3, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected distinct seeds like 1,2,3, got {text!r}")
    return seeds


def _print_seed_summary(summary: dict, output: Path) -> int:
    from bertfit.train.metrics import dev_metrics  # numpy: only for commands that print metrics

    print(f"{len(summary['seeds'])} seeds ({output / 'summary.json'}):")
    for name, stats in dev_metrics(summary["metrics"]).items():
        print(f"  {name}: {stats['mean']:.4f} ± {stats['std']:.4f}")
    return 0


def _run_evaluate(args) -> int:
    from bertfit.train.run import evaluate_run  # torch loads only for commands that run models

    evaluation = evaluate_run(args.run, args.split, args.data_dir, args.batch_size, args.report)
    if args.json:
        output = dict(evaluation.metrics)
        if args.report:  # one key, so that plain --json stays the flat object of metrics
            output["report"] = {scores.split: scores.report for scores in evaluation.splits}
        print(json.dumps(output))
        return 0
    for scores in evaluation.splits:
        print(f"{evaluation.task} {scores.split} ({scores.examples} examples)")
        for name, value in scores.metrics.items():
            print(f"  {name}: {value:.4f}")
        if scores.report is not None:
            from bertfit.train.report import format_report  # loaded already by evaluate_run

            print(format_report(scores.report))
    if evaluation.temperature is not None:
        print(f"(_before: at temperature 1; _after: at the model's {evaluation.temperature:.4f})")
    return 0


def _run_predict(args) -> int:
    if args.output:
        return _run_bulk_predict(args)
    bulk_only = {"--text-a": args.text_a, "--text-b": args.text_b, "--keep": args.keep,
                 "--logits": args.logits, "--overwrite": args.overwrite,
                 "--ray-address": args.ray_address,
                 "--engine ray": args.engine == "ray"}  # fmt: skip
    given = [flag for flag, value in bulk_only.items() if value]
    if given:
        raise ConfigError(f"{given[0]} goes with --output (the bulk form of predict)")
    # torch loads only for a run's model; an export predicts without it
    from bertfit.predictors import load_predictor

    predictor = load_predictor(args.run, threads=args.threads)
    names = tuple(predictor.input_names)
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
    for row in predictor.predict(columns, args.batch_size, not args.raw_probabilities):
        print(json.dumps(row))
    return 0


def _run_bulk_predict(args) -> int:
    # pyarrow, and torch only for a run's model: an export is run without it
    from bertfit.bulk import BulkOptions, predict_bulk
    from bertfit.bulk.parts import parts_dir

    if not args.input:
        raise ConfigError("--output needs --input (the file, folder or glob to classify)")
    if args.sentence1 or args.sentence2:
        raise ConfigError("give either --input or --sentence1/--sentence2, not both")
    keep = None
    if args.keep is not None:
        keep = [name.strip() for name in args.keep.split(",") if name.strip()]
    options = BulkOptions(
        input=args.input,
        output=args.output,
        text_a=args.text_a,
        text_b=args.text_b,
        keep=keep,
        logits=args.logits,
        on_error=args.on_error,
        overwrite=args.overwrite,
        chunk_rows=args.chunk_rows,
        batch_size=args.batch_size,
        threads=args.threads,
        calibrated=not args.raw_probabilities,
    )
    try:
        if args.engine == "ray":
            # ray[data], the ray extra: only for this engine
            from bertfit.bulk.ray_engine import predict_bulk_ray

            summary = predict_bulk_ray(args.run, options, args.ray_address, args.workers)
        else:
            summary = predict_bulk(args.run, options)
    except KeyboardInterrupt:
        print(
            f"bertfit: interrupted; the parts committed in {parts_dir(Path(args.output))} are "
            "kept, and the same command goes on from there",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    print(f"bertfit: {summary.describe()}", file=sys.stderr)
    return 0


def _run_calibrate(args) -> int:
    # torch loads only for commands that run models
    from bertfit.train.run import calibrate_run, describe_calibration

    calibration = calibrate_run(args.run, args.data_dir, args.batch_size)
    if args.json:
        print(json.dumps(calibration.to_dict()))
        return 0
    print(describe_calibration(calibration))
    print(f"written to {find_model_dir(args.run) / BERTFIT_FILE}; re-export to carry it over")
    return 0


def _run_explain(args) -> int:
    # torch loads only for a run's model; an export is explained without it
    from bertfit.predictors import default_explain_method, load_predictor

    predictor = load_predictor(args.source)
    names = predictor.input_names
    texts = [args.sentence1, args.sentence2][: len(names)]
    if any(text is None for text in texts):
        raise ConfigError(f"give {' and '.join(f'--{name}' for name in names)}")
    if len(names) == 1 and args.sentence2 is not None:
        raise ConfigError("this model takes one text: give --sentence1 only")
    method = args.method or default_explain_method(predictor)
    options = {"n_steps": args.steps} if args.steps else {}
    explanation = predictor.explain(texts, method=method, target=args.label, **options)
    if args.png:
        # matplotlib (the viz extra) only when a figure is asked for
        from bertfit.viz.figures import explanation_figure, save_figure

        save_figure(explanation_figure(explanation), args.png)
    if args.json:
        print(json.dumps(explanation.to_dict()))
        return 0
    _print_explanation(explanation)
    if args.png:
        print(f"wrote {args.png}")
    return 0


def _print_explanation(explanation) -> None:
    if explanation.probabilities is None:
        print(f"score: {explanation.score:.4f}")
    else:
        probability = explanation.probabilities[explanation.class_id]
        print(f"label: {explanation.label} (probability {probability:.4f})")
    if explanation.labels is not None:
        print(f"chosen labels: {', '.join(explanation.labels) or '(none)'}")
    print(f"attributions toward it ({explanation.method.replace('_', ' ')}):")
    for text in explanation.texts:
        print(f"  {text.name}:")
        for word in text.words:
            unseen = "" if word.seen else "  (beyond the model's length)"
            print(f"    {word.text:<20} {word.attribution:+.4f}{unseen}")


# -- config -------------------------------------------------------------------------------------


def _add_config(commands) -> None:
    parser = commands.add_parser("config", help="show a resolved run config, or the config keys")
    actions = parser.add_subparsers(dest="config_action", required=True, metavar="ACTION")
    show = actions.add_parser(
        "show", help="print the fully resolved run config (what RUN/config.json would hold)"
    )
    _add_config_arguments(show)
    show.add_argument("--format", choices=["json", "yaml"], default="json")
    show.add_argument(
        "--no-resolve",
        action="store_true",
        help="leave data_dir, model and total_steps as given (reads no data or model)",
    )
    show.set_defaults(handler=_run_config_show)
    keys = actions.add_parser("keys", help="list every config key with its type and default")
    keys.set_defaults(handler=_run_config_keys)


def _run_config_show(args) -> int:
    config = load_run_config(args.config, parse_overrides(args.overrides))
    if not args.no_resolve:
        # torch loads only to resolve: --no-resolve reads no data or model
        from bertfit.train.run import resolve_run_config

        resolve_run_config(config)
    print(dump_config(config.to_dict(), args.format), end="")
    return 0


def _run_config_keys(args) -> int:
    for key, kind, default in describe_keys():
        print(f"{key:<40} {kind:<28} {json.dumps(default)}")
    return 0


# -- plot ---------------------------------------------------------------------------------------


def _add_plot(commands) -> None:
    parser = commands.add_parser(
        "plot", help="draw a figure: schedule, inputs, history, confusion or tune"
    )
    figures = parser.add_subparsers(dest="figure", required=True, metavar="FIGURE")
    schedule = figures.add_parser("schedule", help="learning rate against the train step")
    schedule.add_argument("source", help="run directory, run config file or optimizer JSON")
    schedule.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="dotted run config overrides"
    )
    schedule.add_argument("--total-steps", type=_positive_int, help="decay horizon in steps")
    schedule.add_argument("--points", type=_positive_int, default=1001, help="(default: 1001)")
    inputs = figures.add_parser("inputs", help="a batch's packed inputs as three heat maps")
    inputs.add_argument("source", help="run directory, run config file, model directory or preset")
    inputs.add_argument("--task", help="task (default: the source's, else mrpc)")
    inputs.add_argument("--data-dir", help="GLUE directory (default: the source's)")
    inputs.add_argument("--split", default="train", help="(default: train)")
    inputs.add_argument("--start", type=int, default=0, help="first row of the batch")
    inputs.add_argument("--batch-size", type=_positive_int, default=32, help="(default: 32)")
    inputs.add_argument("--max-seq-length", type=_positive_int, help="(default: the source's)")
    inputs.add_argument(
        "--pad-to-longest", action="store_true", help="pad to the batch's longest example"
    )
    history = figures.add_parser("history", help="a run's training and evaluation curves")
    history.add_argument("source", metavar="run", help="run directory")
    confusion = figures.add_parser("confusion", help="confusion matrix of a run on a split")
    confusion.add_argument("source", metavar="run", help="run directory or saved model directory")
    confusion.add_argument("--split", help="labelled split (default: the task's dev split)")
    confusion.add_argument("--data-dir", help="GLUE directory (default: the one the run used)")
    confusion.add_argument("--batch-size", type=_positive_int, default=_EVAL_BATCH_SIZE)
    confusion.add_argument("--normalize", action="store_true", help="colour by share of row")
    confusion.add_argument("--quiet", action="store_true", help="no progress bar")
    tune = figures.add_parser(
        "tune", help="a search's optimization history and parameter importances"
    )
    tune.add_argument("source", metavar="run", help="bertfit tune's output folder")
    for sub in (schedule, inputs, history, confusion, tune):
        sub.add_argument("--output", "-o", required=True, help="image file: .png, .svg or .pdf")
        sub.add_argument("--data", help="also write the plotted numbers to this JSON file")
        sub.add_argument("--dpi", type=_positive_int, default=120, help="(default: 120)")
        sub.set_defaults(handler=_run_plot)


def _plot_options(args) -> dict:
    if args.figure == "schedule":
        overrides = parse_overrides(args.overrides)
        return {"overrides": overrides, "total_steps": args.total_steps, "points": args.points}
    if args.figure == "inputs":
        names = ("task", "data_dir", "split", "start", "batch_size", "max_seq_length")
        return {name: getattr(args, name) for name in names} | {
            "pad_to_longest": args.pad_to_longest
        }
    if args.figure == "confusion":
        names = ("split", "data_dir", "batch_size", "normalize")
        return {name: getattr(args, name) for name in names}
    return {}


def _run_plot(args) -> int:
    # numpy, and matplotlib once a figure is drawn, load only for plot commands
    from bertfit.viz import plots
    from bertfit.viz.figures import FORMATS, save_figure

    if Path(args.output).suffix.lower() not in FORMATS:  # before any slow work
        raise ConfigError(f"--output {args.output}: expected a name ending in {', '.join(FORMATS)}")
    draw = getattr(plots, f"plot_{args.figure}")
    data, figure = draw(args.source, **_plot_options(args))
    save_figure(figure, args.output, dpi=args.dpi)
    if args.data:
        write_json(args.data, data.to_dict())
    print(f"wrote {args.output}" + (f" and {args.data}" if args.data else ""))
    return 0


# -- inspect ------------------------------------------------------------------------------------


def _add_inspect(commands) -> None:
    parser = commands.add_parser(
        "inspect", help="architecture, parameters per block and special tokens of a model"
    )
    parser.add_argument(
        "model", help="preset name, model directory, run directory or weight file/checkpoint"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--tensors", action="store_true", help="also list every stored tensor")
    parser.add_argument("--modules", action="store_true", help="also print the PyTorch module tree")
    parser.set_defaults(handler=_run_inspect)


def _run_inspect(args) -> int:
    # safetensors and torch (for --modules) load only for inspect
    from bertfit.inspect import format_summary, format_tensors, inspect_model, module_tree

    summary = inspect_model(args.model)
    if args.json:
        print(json.dumps(summary.to_dict(tensors=args.tensors), indent=2))
        return 0
    print(format_summary(summary))
    if args.tensors:
        print("tensors\n" + format_tensors(summary))
    if args.modules:
        print("modules\n" + module_tree(summary))
    return 0


# -- export and serve -----------------------------------------------------------------------------


def _add_deployment(commands) -> None:
    _add_export(commands)
    _add_serve(commands)


def _add_export(commands) -> None:
    parser = commands.add_parser(
        "export", help="write a self-contained directory that classifies raw strings"
    )
    parser.add_argument("run", help="run directory (or a saved model directory)")
    parser.add_argument("--output", required=True, help="directory to write")
    parser.add_argument(
        "--format",
        default="onnx",
        choices=["onnx", "torch-export"],
        help="onnx (loads without PyTorch; default) or torch-export (a .pt2 program)",
    )
    parser.add_argument("--quantize", choices=["int8"], help="int8 dynamic quantization (onnx)")
    parser.add_argument(
        "--check-examples",
        type=int,
        default=64,
        help="examples compared with the PyTorch model (0: no check; default: %(default)s)",
    )
    parser.add_argument("--check-input", help="TSV or JSON lines file of texts to check on")
    parser.add_argument(
        "--transformer-fusions",
        action="store_true",
        help="apply onnxruntime.transformers' BERT fusions at export (slower on CPUs measured)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=_run_export)


def _run_export(args) -> int:
    from bertfit.export.export import export_classifier  # torch: only to export

    result = export_classifier(
        args.run,
        args.output,
        export_format=args.format,
        quantize=args.quantize,
        check_examples=args.check_examples,
        check_input=args.check_input,
        overwrite=args.overwrite,
        transformer_fusions=args.transformer_fusions,
    )
    print(f"exported {result.format} ({result.precision}) to {result.directory}")
    if result.fusions:
        print("  fused: " + ", ".join(f"{n} {name}" for name, n in result.fusions.items()))
    check = result.check
    if check is not None:
        print(
            f"  check on {check.examples} examples ({check.source}): max |logit diff| vs PyTorch "
            f"{check.max_abs_diff:.3g}, same class {check.class_agreement:.1%}"
        )
    return 0


def _add_serve(commands) -> None:
    defaults = ServeConfig()
    parser = commands.add_parser("serve", help="serve an exported model over HTTP")
    parser.add_argument("directory", help="directory written by `bertfit export`")
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help="address to bind (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="(default: %(default)s)")
    parser.add_argument("--max-batch-size", type=_positive_int, default=defaults.max_batch_size,
                        help="instances per model call (default: %(default)s)")  # fmt: skip
    parser.add_argument("--max-wait-ms", type=float, default=defaults.max_wait_ms,
                        help="longest wait for a batch to fill (default: %(default)s)")  # fmt: skip
    parser.add_argument("--max-instances", type=_positive_int, default=defaults.max_instances,
                        help="instances per request (default: %(default)s)")  # fmt: skip
    parser.add_argument("--max-body-bytes", type=_positive_int, default=defaults.max_body_bytes,
                        help="request body size in bytes (default: %(default)s)")  # fmt: skip
    parser.add_argument("--threads", type=_positive_int, help="model threads (default: all cores)")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.set_defaults(handler=_run_serve)


def _run_serve(args) -> int:
    from bertfit.serve import serve  # onnxruntime and starlette load only to serve

    config = ServeConfig(
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_body_bytes=args.max_body_bytes,
        max_instances=args.max_instances,
    )
    serve(args.directory, args.host, args.port, config, args.threads, args.access_log)
    return 0


# -- convert and models ---------------------------------------------------------------------------

_FORMAT_TITLES = {
    "hf": "PyTorch weights",
    "tf1": "TensorFlow checkpoint with Google's original BERT names",
    "tf2": "TensorFlow 2 object-based checkpoint (Model Garden)",
    "tf-hub": "TF Hub SavedModel",
}


def _add_convert(commands) -> None:
    parser = commands.add_parser(
        "convert", help="write a TensorFlow (or any) BERT checkpoint as a Hugging Face directory"
    )
    parser.add_argument(
        "source",
        help="checkpoint directory, checkpoint prefix, SavedModel, model directory or preset",
    )
    parser.add_argument("--output", required=True, help="directory to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    parser.set_defaults(handler=_run_convert)


def _run_convert(args) -> int:
    # torch loads only to convert
    from bertfit.model.convert import convert_to_hf
    from bertfit.model.presets import resolve_model_dir

    result = convert_to_hf(resolve_model_dir(args.source), args.output, args.overwrite)
    source = result.source
    print(f"read {source.weights} ({_FORMAT_TITLES.get(source.format, source.format)})")
    print(f"config from {source.config_from}")
    print(result.report)
    activation = source.config.to_hf_dict()["hidden_act"]
    print(
        f"wrote {result.output}: config.json (BertModel, hidden_act {activation}), "
        "model.safetensors, vocab.txt, tokenizer_config.json "
        f"(do_lower_case {str(source.lower_case).lower()})"
    )
    return 0


def _add_models(commands) -> None:
    parser = commands.add_parser("models", help="list the preset encoders and what is cached")
    parser.add_argument("--json", action="store_true", help="print one JSON list")
    parser.set_defaults(handler=_run_models)


def _run_models(args) -> int:
    from bertfit.model.presets import models_table, preset_listings  # protobuf: only for models

    rows = preset_listings()
    print(json.dumps(rows, indent=2) if args.json else models_table(rows))
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse takes one run of positionals: KEY=VALUE overrides after a flag come back unknown.
    overrides = all("=" in item and not item.startswith("-") for item in extra)
    if extra and overrides and hasattr(args, "overrides"):
        args.overrides = [*args.overrides, *extra]
        extra = []
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bertfit`` command; returns the exit status.

    A ``torchrun`` worker does not return: once every process has finished, it leaves the
    process group and exits at once (see :func:`bertfit.train.distributed.exit_process`).
    """
    args = _parse(argv)
    try:
        code = _run_command(args)
    except BaseException:  # an unexpected error: leave the job and let the traceback show
        _leave_job(succeeded=False)
        raise
    if _leave_job(succeeded=code == 0):
        from bertfit.train import distributed  # loaded already: this process joined a job

        distributed.exit_process(code)
    return code


def _leave_job(succeeded: bool) -> bool:
    """Leave a ``torchrun`` job's process group, if this process joined one."""
    if "torch" not in sys.modules:  # commands that never load torch never join a job
        return False
    from bertfit.train import distributed  # torch is loaded already

    return distributed.shutdown(wait_for_others=succeeded)


def _run_command(args: argparse.Namespace) -> int:
    """Run the parsed command; user errors and interruptions become exit statuses."""
    # --quiet silences every progress bar of this command, and only of this one (main may be
    # called again in the same process, as the tests do).
    quiet_before = progress.is_quiet()
    progress.set_quiet(quiet_before or getattr(args, "quiet", False))
    try:
        return args.handler(args)
    except TrainingInterrupted as interrupted:
        checkpoint = interrupted.checkpoint
        resume = f"; continue with: bertfit train --resume {checkpoint.parent.parent}"
        print(
            f"bertfit: interrupted after step {interrupted.step}; "
            + (f"saved {checkpoint}{resume}" if checkpoint else "no checkpoint saved"),
            file=sys.stderr,
        )
        return EXIT_TERMINATED if interrupted.signum == signal.SIGTERM else EXIT_INTERRUPTED
    except BertfitError as error:
        print(f"bertfit: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except FloatingPointError as error:
        print(f"bertfit: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bertfit: interrupted; files in the run directory are complete", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader left (`bertfit config keys | head`): stop quietly, as Unix tools do, and
        # point stdout at /dev/null so Python's final flush does not fail again.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    finally:
        progress.set_quiet(quiet_before)


if __name__ == "__main__":
    sys.exit(main())
