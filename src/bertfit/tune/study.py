"""The search: an Optuna study of training runs, as ``bertfit tune`` runs it.

Budget: ``--trials N`` is the study's total of COMPLETE and PRUNED trials, not this
process's, so a stopped search started again with the same command runs only what is left,
and several workers sharing a study run N between them. Failed trials (an error, a killed
process) do not count. ``--timeout`` stops this process from starting trials after that long;
the trial under way finishes.

Sampler: TPE (Optuna's default), after 5 random trials rather than 10: a search on a CPU
affords tens of trials, not hundreds. With ``constant_liar`` a worker treats the trials
others are running as finished with a poor value, so two workers do not try the same region
at once. Not seeded: a restarted search must not replay the same draws.

Pruner: :class:`optuna.pruners.MedianPruner` stops a trial whose best evaluation so far is
below the median of the other trials' at the same evaluation, once 5 trials have completed
(fewer would make a noisy median), and never at a trial's first evaluation
(``n_warmup_steps=2``: fine-tuning's first epoch is the most seed- and warmup-dependent).
Fine-tuning runs have a handful of evaluations, one per epoch, and the searched epochs
differ between trials; Hyperband and successive halving want many rungs of comparable
resource, which such runs do not have, and the median needs no setting of its own.

Trial 0 of a new study is the starting config itself (the task's recipe with the flags and
``--config`` file), so the search always measures what it has to beat.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna

from bertfit.data.tasks import get_task
from bertfit.errors import ConfigError
from bertfit.model.presets import resolve_model_dir
from bertfit.model.sources import describe_source
from bertfit.train.config import RunConfig
from bertfit.tune.objective import SURPLUS_ATTR, Objective, SurplusTrial
from bertfit.tune.outputs import Outputs, best_trial
from bertfit.tune.space import SearchSpace, default_space, read_space
from bertfit.tune.storage import (
    OutputLock,
    fail_abandoned_trials,
    open_storage,
    redact,
    storage_url,
)

DEFAULT_TRIALS = 20
STARTUP_TRIALS = 5  # random trials before TPE models the results, and before any pruning
SETTINGS_ATTR = "bertfit"  # the study's user attribute holding what it searches
# Keys that may differ between workers of one study: where things are on each machine.
_LOCAL_KEYS = (("model",), ("data_dir",), ("data", "train_file"), ("data", "dev_file"))


@dataclass
class TuneOptions:
    """What ``bertfit tune`` was asked: the starting config, the keys the command line fixed,
    and the search's own settings."""

    config: RunConfig
    output: Path
    fixed: list[str]
    trials: int | None = None
    timeout: float | None = None
    seeds: list[int] | None = None
    space: str | None = None
    storage: str | None = None
    study: str | None = None
    progress: bool | None = None


@dataclass
class TuneSummary:
    """What a tune left: the study's trials by state, its best trial, and this process's."""

    study: str
    counts: dict[str, int]
    best_number: int | None
    best_value: float | None
    ran: int
    output: Path


def sampler():
    """TPE with 5 random startup trials and a constant liar (see the module docstring)."""
    with warnings.catch_warnings():  # constant_liar is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(n_startup_trials=STARTUP_TRIALS, constant_liar=True)


def pruner():
    """The median pruner, never at a trial's first evaluation (see the module docstring)."""
    return optuna.pruners.MedianPruner(n_startup_trials=STARTUP_TRIALS, n_warmup_steps=2)


def search_space(options: TuneOptions) -> SearchSpace:
    """The space to search: ``--space`` or the default, less what the command line fixed.

    Every bound is checked against the starting config, and re-initialized layers against
    the model's layer count, before any trial runs.
    """
    config = options.config
    model = describe_source(resolve_model_dir(config.model)).config
    where = str(options.space) if options.space else "the default space"
    full = read_space(options.space) if options.space else default_space(model.num_layers)
    space, dropped = full.without(options.fixed, config)
    for key in dropped:
        print(f"fixed by the command line, not searched: {key}")
    if not space.params:
        raise ConfigError(f"{where}: every key is fixed by the command line; nothing to search")
    space.check(config, where)
    for param in space.params:
        if param.key == "reinit_layers" and param.high > model.num_layers:
            raise ConfigError(
                f"{where}: reinit_layers up to {param.high:g}, but the model has "
                f"{model.num_layers} layers"
            )
    return space


def check_options(options: TuneOptions) -> None:
    """Refuse what a search cannot score or run before anything starts."""
    data = options.config.data
    if data.train_file is not None and data.dev_file is None:
        raise ConfigError("tune scores each trial on a dev set: give --dev FILE")
    if data.train_file is None:
        get_task(options.config.task)  # an unknown task: refused before the study starts
    options.config.validate()


def settings_of(options: TuneOptions, space: SearchSpace) -> dict:
    """What every worker of a study must agree on: the space, the seeds, and the starting
    config less the paths, which differ between machines."""
    base = options.config.to_dict()
    for *sections, leaf in _LOCAL_KEYS:
        node = base
        for section in sections:
            node = node[section]
        node.pop(leaf, None)
    return {"space": space.to_dict(), "seeds": options.seeds, "config": base}


def open_study(options: TuneOptions, space: SearchSpace, url: str):
    """Create the study, or load it (it must search the same space from the same config).
    Returns the study and whether this process created it."""
    storage = open_storage(url, shared=options.storage is not None)
    name = options.study or options.output.resolve().name
    settings = settings_of(options, space)
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=name,
            direction="maximize",
            sampler=sampler(),
            pruner=pruner(),
        )
        study.set_user_attr(SETTINGS_ATTR, settings)
        return study, True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(
            study_name=name, storage=storage, sampler=sampler(), pruner=pruner()
        )
    saved = study.user_attrs.get(SETTINGS_ATTR)
    difference = _first_difference(saved, settings) if saved is not None else None
    if difference is not None:
        raise ConfigError(
            f"study {name!r} in {redact(url)} searches other settings ({difference} differs); "
            "give the same command, or another --study or --output"
        )
    return study, False


def _first_difference(saved, wanted, prefix: str = "") -> str | None:
    if isinstance(saved, dict) and isinstance(wanted, dict):
        for key in sorted(saved.keys() | wanted.keys()):
            found = _first_difference(saved.get(key), wanted.get(key), f"{prefix}{key}.")
            if found is not None:
                return found
        return None
    return None if saved == wanted else prefix.rstrip(".") or "settings"


def counted(study) -> int:
    """The trials that count toward ``--trials``: COMPLETE and PRUNED."""
    state = optuna.trial.TrialState
    return len(study.get_trials(deepcopy=False, states=(state.COMPLETE, state.PRUNED)))


def enqueue_start(study, options: TuneOptions, space: SearchSpace) -> None:
    """Queue the starting config's values as the first trial (those inside the space)."""
    data = options.config.to_dict()
    params = {}
    for param in space.params:
        node = data
        for part in param.key.split("."):
            node = node[part]
        if param.contains(node):
            params[param.key] = node
    study.enqueue_trial(params, skip_if_exists=True)


def run_tune(options: TuneOptions) -> TuneSummary:
    """Search as ``options`` say; see the module docstring."""
    optuna.logging.set_verbosity(logging.ERROR)  # bertfit prints its own line per trial
    check_options(options)
    output = options.output
    space = search_space(options)
    lock = OutputLock(output)
    lock.acquire()
    try:
        return _search(options, space, output)
    finally:
        lock.release()


def _search(options: TuneOptions, space: SearchSpace, output: Path) -> TuneSummary:
    url = storage_url(options.storage, output)
    study, created = open_study(options, space, url)
    print(f"study {study.study_name!r} in {redact(url)}; searching:")
    for param in space.params:
        print(f"  {param.describe()}")
    if options.storage is None:  # only this process uses OUTPUT/study.db (it holds the lock)
        for number in fail_abandoned_trials(study):
            print(f"trial {number} was left running by a stopped tune: marked FAIL")
    if created:
        enqueue_start(study, options, space)
    outputs = Outputs(output, options.config, space.keys, options.seeds)
    outputs.write_settings(
        {
            "study": study.study_name,
            "storage": None if options.storage is None else redact(url),
            "space": space.to_dict(),
            "seeds": options.seeds,
        }
    )
    outputs.update(study)  # a crash may have left a finished trial's weights
    trials = options.trials
    if trials is None and options.timeout is None:
        trials = DEFAULT_TRIALS
    ran = 0
    if trials is None or counted(study) < trials:
        objective = Objective(
            options.config, space, output, options.seeds, trials, options.progress
        )

        def after_trial(study, trial) -> None:
            nonlocal ran
            if trial.user_attrs.get(SURPLUS_ATTR):
                return
            ran += 1
            outputs.update(study)
            _announce(study, trial)
            running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            if trials is not None and counted(study) + len(running) >= trials:
                study.stop()

        try:
            study.optimize(
                objective,
                timeout=options.timeout,
                callbacks=[after_trial],
                catch=(SurplusTrial, FloatingPointError),
                gc_after_trial=True,
            )
        finally:  # an interrupted trial is FAIL by now: drop its weights, list it
            outputs.update(study)
    else:
        print(f"the study already has {counted(study)} trials of {trials}; nothing to run")
    best = best_trial(study)
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        if not trial.user_attrs.get(SURPLUS_ATTR):
            counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return TuneSummary(
        study.study_name,
        counts,
        None if best is None else best.number,
        None if best is None else best.value,
        ran,
        output,
    )


def _announce(study, trial) -> None:
    """One line per finished trial: its state, value and time, and the best so far."""
    seconds = None
    if trial.datetime_start is not None and trial.datetime_complete is not None:
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
    value = "" if trial.value is None or not math.isfinite(trial.value) else f" {trial.value:.4f}"
    took = "" if seconds is None else f" in {seconds:.0f} s"
    best = best_trial(study)
    so_far = "" if best is None else f"; best: trial {best.number}, {best.value:.4f}"
    print(f"trial {trial.number} {trial.state.name}{value}{took}{so_far}", flush=True)
