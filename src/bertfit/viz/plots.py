"""One call per figure, from what a user has at hand: a run, a config file, a model or preset.

These are what ``bertfit plot {schedule,inputs,history,confusion,tune}`` runs. Each builds the data
(:mod:`bertfit.viz.data`), draws it (:mod:`bertfit.viz.figures`), saves the image when given a
path, and returns ``(data, figure)`` so callers can check or reuse the numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bertfit.config import read_json
from bertfit.data.readers import read_glue_split
from bertfit.data.sources import resolve_task_dir
from bertfit.data.tasks import get_task
from bertfit.errors import BertfitError, ConfigError
from bertfit.model.presets import resolve_model_dir
from bertfit.model.sources import read_lower_case
from bertfit.paths import BERTFIT_FILE, RUN_MODEL_DIR, find_model_dir
from bertfit.text.packing import DEFAULT_TRUNCATOR
from bertfit.text.processor import TextProcessor
from bertfit.text.tokenizer import VOCAB_FILE_NAME, WordpieceTokenizer
from bertfit.train.config import RunConfig
from bertfit.train.config_file import CONFIG_FILE, Override, load_run_config, read_config_file
from bertfit.train.optim import OptimizationConfig
from bertfit.train.tracking import STEP_LOG_FILE, read_jsonl
from bertfit.viz import data as viz_data
from bertfit.viz import figures


def _save(figure, output: str | Path | None) -> None:
    if output is not None:
        figures.save_figure(figure, output)


def is_run_dir(path: Path) -> bool:
    """A directory ``bertfit train`` wrote (its ``config.json`` is a run config)."""
    return (path / CONFIG_FILE).is_file() and (
        (path / viz_data.HISTORY_FILE).is_file() or (path / "model" / BERTFIT_FILE).is_file()
    )


def _looks_like_optimizer(data: dict) -> bool:
    """An ``OptimizationConfig.as_dict()`` (the tutorial's optimizer JSON), not a run config."""
    return "learning_rate" in data and not {"optimizer", "trainer", "task"} & set(data)


# -- schedule -----------------------------------------------------------------------------------


def optimization_from_source(
    source: str | Path, overrides: Sequence[Override] = (), total_steps: int | None = None
) -> tuple[OptimizationConfig, list[dict] | None]:
    """The optimizer config of a run, a run config file or an optimizer JSON, with its horizon.

    Returns the config (``total_steps`` set) and, for a run left as it was, the per-step
    records of ``steps.jsonl``. The horizon is ``total_steps`` if given, else the config's,
    else derived from the task's training data (see
    :func:`bertfit.train.run.resolve_run_config`).
    """
    path = Path(source).expanduser()
    used = None
    if path.is_file() and _looks_like_optimizer(read_config_file(path)):
        if overrides:
            raise ConfigError(f"{path}: overrides apply to run configs, not an optimizer JSON")
        optimization = OptimizationConfig.from_dict(read_config_file(path), where=str(path))
    else:
        config = load_run_config(path, overrides)
        if path.is_dir() and not overrides:
            used = read_jsonl(path / STEP_LOG_FILE) or None
        stale = bool(overrides)  # trainer settings may have changed the horizon
        if total_steps is None and (config.optimizer.total_steps is None or stale):
            # torch loads only when the horizon must be counted from the training data
            from bertfit.train.run import resolve_run_config

            try:
                resolve_run_config(config)  # counts the training examples
            except BertfitError as error:
                raise type(error)(f"{error}; or give the horizon: --total-steps N") from None
        optimization = config.optimizer
    if total_steps is not None:
        used = None if total_steps != optimization.total_steps else used
        optimization = optimization.with_total_steps(total_steps)
    if optimization.total_steps is None:
        raise ConfigError(f"{path}: no optimizer.total_steps; pass --total-steps N")
    return optimization, used


def plot_schedule(
    source: str | Path,
    output: str | Path | None = None,
    *,
    overrides: Sequence[Override] = (),
    total_steps: int | None = None,
    points: int = 1001,
):
    """The learning-rate schedule of a run or config (with the rates a run used, if any)."""
    optimization, used = optimization_from_source(source, overrides, total_steps)
    data = viz_data.schedule_data(optimization, points, used)
    figure = figures.schedule_figure(data)
    _save(figure, output)
    return data, figure


# -- packed inputs ------------------------------------------------------------------------------


def _tokenizer(vocab_dir: Path, lower_case: bool):
    return WordpieceTokenizer(vocab_dir / VOCAB_FILE_NAME, lower_case=lower_case)


def text_setup(
    source: str | Path,
    task: str | None = None,
    data_dir: str | None = None,
    max_seq_length: int | None = None,
):
    """Tokenizer, task, data directory and length of a run, config file, model dir or preset.

    Explicit ``task``, ``data_dir`` and ``max_seq_length`` win over what the source says.
    Returns ``(tokenizer, task name, data_dir or None, max_seq_length, truncator)``; the
    truncator is the run's or model's (round robin for a bare encoder).
    """
    path = Path(source).expanduser()
    found_task, found_data, found_length = None, None, None
    truncator = DEFAULT_TRUNCATOR
    if path.is_dir() and is_run_dir(path):
        config = RunConfig.from_json_file(path / CONFIG_FILE)
        found_task, found_data = config.task, config.data_dir
        path = path / "model"
    if path.is_dir() and (path / BERTFIT_FILE).is_file():
        info = read_json(path / BERTFIT_FILE)
        tokenizer = _tokenizer(path, bool(info.get("lower_case", True)))
        found_task = found_task or info.get("task")
        found_length = info.get("max_seq_length")
        truncator = info.get("truncator", DEFAULT_TRUNCATOR)
    elif path.is_file():
        config = load_run_config(path)
        model_dir = resolve_model_dir(config.model)
        tokenizer = _tokenizer(model_dir, read_lower_case(model_dir))
        found_task, found_data, found_length = config.task, config.data_dir, config.max_seq_length
        truncator = config.truncator
    else:
        model_dir = resolve_model_dir(str(source))
        tokenizer = _tokenizer(model_dir, read_lower_case(model_dir))
    return (
        tokenizer,
        task or found_task or "mrpc",
        data_dir or found_data,
        max_seq_length or found_length or 128,
        truncator,
    )


def plot_inputs(
    source: str | Path,
    output: str | Path | None = None,
    *,
    task: str | None = None,
    data_dir: str | None = None,
    split: str = "train",
    start: int = 0,
    batch_size: int = 32,
    max_seq_length: int | None = None,
    pad_to_longest: bool = False,
):
    """Heat maps of one batch of packed inputs: rows ``start .. start + batch_size`` of a split.

    Padded to ``max_seq_length`` as the reference tutorial's batches are, or to the batch's
    longest example with ``pad_to_longest`` (as bertfit's trainer batches are).
    """
    tokenizer, task_name, data_dir, length, truncator = text_setup(
        source, task, data_dir, max_seq_length
    )
    spec = get_task(task_name)
    task_dir = resolve_task_dir(spec, data_dir, split)
    examples = read_glue_split(task_dir / spec.split_file(split), spec, split)
    if not 0 <= start < len(examples):
        raise ConfigError(f"start: {split} has {len(examples)} examples, got start {start}")
    rows = list(range(start, min(start + batch_size, len(examples))))
    columns = examples.select(rows).columns
    packed = TextProcessor(tokenizer, length, truncator)(columns, pad_to_longest=pad_to_longest)
    where = f"{task_dir / spec.split_file(split)}, rows {rows[0]}-{rows[-1]}"
    data = viz_data.inputs_data(packed, where)
    figure = figures.inputs_figure(data)
    _save(figure, output)
    return data, figure


# -- history ------------------------------------------------------------------------------------


def plot_history(run: str | Path, output: str | Path | None = None):
    """A run's training and evaluation curves (see :func:`figures.history_figure`)."""
    data = viz_data.read_history(run)
    figure = figures.history_figure(data)
    _save(figure, output)
    return data, figure


# -- tune ---------------------------------------------------------------------------------------


def plot_tune(run: str | Path, output: str | Path | None = None):
    """A search's optimization history and parameter importances (``bertfit tune``'s output
    folder; see :func:`figures.tune_figure`)."""
    from bertfit.tune import require_optuna  # the tune extra: only this figure reads a study

    require_optuna()
    from bertfit.tune.report import tune_data  # optuna, now known to be there

    data = tune_data(run)
    figure = figures.tune_figure(data)
    _save(figure, output)
    return data, figure


# -- confusion matrix ---------------------------------------------------------------------------


def classifier_dir(source: str | Path) -> tuple[Path, str | None]:
    """The saved classifier of a run (``RUN/model``) or a model directory, and the run's data."""
    model_dir = find_model_dir(source)
    run_config = model_dir.parent / CONFIG_FILE
    if model_dir.name == RUN_MODEL_DIR and run_config.is_file():
        return model_dir, read_json(run_config).get("data_dir")
    return model_dir, None


def plot_confusion(
    source: str | Path,
    output: str | Path | None = None,
    *,
    split: str | None = None,
    data_dir: str | None = None,
    batch_size: int = 64,
    normalize: bool = False,
):
    """The confusion matrix of a run's best model (or a saved classifier) on a labelled split."""
    from bertfit.inference import TextClassifier  # torch: only this figure runs the model

    model_dir, run_data = classifier_dir(source)
    classifier = TextClassifier.from_pretrained(model_dir)
    task = get_task(classifier.info.task)
    split = split or task.dev_splits[0]
    if split in task.test_splits:
        raise ConfigError(f"split {split}: GLUE's test files have no labels; use a dev split")
    task_dir = resolve_task_dir(task, data_dir or run_data, split)
    examples = read_glue_split(task_dir / task.split_file(split), task, split)
    data = viz_data.confusion_data(classifier, examples, split, batch_size)
    figure = figures.confusion_figure(data, normalize=normalize)
    _save(figure, output)
    return data, figure
