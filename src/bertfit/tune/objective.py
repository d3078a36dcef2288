"""One trial: an ordinary training run per seed, scored by the task's main dev metric.

A trial trains in ``OUTPUT/trials/N/`` (one run; with ``--seeds``, ``seed-S/`` per seed) with
the search's values on top of the starting config, and its value is the best evaluation's
main metric (the run keeps that model), averaged over the seeds. Checkpoints are off: an
interrupted trial is failed and never resumed, and they would only cost disk and time.

Pruning: after each evaluation the run reports its main metric to Optuna (a callback of the
trainer, :class:`ReportEvaluations`), step = the evaluation's number (1 for the first), and
stops when the pruner says so; the trial is then PRUNED. With several seeds only the first
seed's run reports: its evaluations are comparable step by step with every other trial's
first seed, whereas a running mean over seeds would put evaluations of different seeds at
the same step. The later seeds of a trial that survived its first run to the end are not
pruned.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from bertfit.config import write_json
from bertfit.train.callbacks import Evaluation
from bertfit.train.config import RunConfig
from bertfit.train.config_file import apply_overrides
from bertfit.train.metrics import metric_prefix
from bertfit.train.run import summarize_metrics, task_of, train_run
from bertfit.tune.space import SearchSpace

TRIALS_DIR = "trials"
# Where a trial's result is recorded in its Optuna user attributes.
BEST_RUN_ATTR = "best_run"  # the run directory (relative to OUTPUT) of its best seed
SEED_VALUES_ATTR = "seed_values"
METRIC_ATTR = "metric"
OUTPUT_ATTR = "output"  # the output folder of the process that ran it
SURPLUS_ATTR = "surplus"  # started beyond --trials by a racing worker; failed unrun


class SurplusTrial(Exception):
    """A trial asked for after the study's budget was taken (see :class:`Objective`)."""


def trial_config(base: RunConfig, params: dict[str, Any]) -> RunConfig:
    """``base`` with the searched values, as a trial runs it."""
    data = apply_overrides(base.to_dict(), list(params.items()), "trial")
    return RunConfig.from_dict(data, where="trial")


def main_metric_key(run_dir: Path) -> str:
    """The record key of a finished run's main dev metric (``dev_accuracy``): the one that
    picked its best model (``trainer.main_metric``, else the task's first)."""
    config = RunConfig.from_json_file(run_dir / "config.json")
    task = task_of(config)
    return metric_prefix(task.dev_splits[0]) + config.trainer.main_metric_of(task)


def remove_weights(run_dir: Path) -> None:
    """Delete what is large in a run directory (its model and any checkpoints), keeping its
    config, results, history and timings."""
    for name in ("model", "checkpoints"):
        shutil.rmtree(run_dir / name, ignore_errors=True)


@dataclass
class ReportEvaluations:
    """A trainer callback (:mod:`bertfit.train.callbacks`) that reports each evaluation's main
    metric to ``trial`` at step = the evaluation's number, and stops the run when the pruner
    says so. Only evaluations report, so no trial is pruned before its first one."""

    trial: Any
    pruned_at: int | None = None

    def __call__(self, evaluation: Evaluation) -> str | None:
        value = evaluation.record.get(evaluation.key) if evaluation.key else None
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return None
        step = len(evaluation.history)
        self.trial.report(float(value), step)
        if not self.trial.should_prune():
            return None
        self.pruned_at = step
        return f"pruned by the search after evaluation {step} ({evaluation.key} {value:.4f})"


@dataclass
class Objective:
    """The function Optuna optimizes: one trial's mean main dev metric over ``seeds``.

    ``trials`` is the study's budget (COMPLETE and PRUNED trials; None: no limit). Workers
    sharing a study may each ask for a trial at the moment the budget is reached; a trial
    that finds ``trials`` others finished or running before it (by number) is surplus: it
    stops this worker and fails at once, unrun and marked as such (``trials.csv`` leaves it
    out).
    """

    base: RunConfig
    space: SearchSpace
    output: Path
    seeds: Sequence[int] | None = None
    trials: int | None = None
    progress: bool | None = None
    announce: Any = print
    _counted: tuple = field(default=(), init=False)

    def __post_init__(self) -> None:
        state = optuna.trial.TrialState
        self._counted = (state.COMPLETE, state.PRUNED, state.RUNNING)

    def __call__(self, trial) -> float:
        if self._is_surplus(trial):
            trial.set_user_attr(SURPLUS_ATTR, True)
            trial.study.stop()
            raise SurplusTrial(f"the study already has its {self.trials} trials")
        params = self.space.suggest(trial)
        config = trial_config(self.base, params)
        config.trainer.save_checkpoints = False
        trial_dir = self.output / TRIALS_DIR / str(trial.number)
        shutil.rmtree(trial_dir, ignore_errors=True)  # a number is new to a study; be sure
        trial.set_user_attr(OUTPUT_ATTR, str(self.output.resolve()))
        shown = ", ".join(f"{key}={_short(value)}" for key, value in params.items())
        self.announce(f"trial {trial.number}: {shown or 'no searched keys'} -> {trial_dir}")
        seeds = list(self.seeds) if self.seeds else [config.trainer.seed]
        values: dict[str, float] = {}
        best_runs: dict[str, Path] = {}
        records = []
        for index, seed in enumerate(seeds):
            run_config = RunConfig.from_dict(config.to_dict())
            run_config.trainer.seed = seed
            run_dir = trial_dir / f"seed-{seed}" if self.seeds else trial_dir
            report = ReportEvaluations(trial)
            if self.seeds:
                self.announce(f"trial {trial.number}, seed {seed}:")
            result = train_run(
                run_config, run_dir, self.progress, callbacks=[report] if index == 0 else []
            )
            if report.pruned_at is not None:
                raise optuna.TrialPruned(f"pruned after evaluation {report.pruned_at}")
            key = main_metric_key(run_dir)
            value = (result.best or {}).get(key)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise FloatingPointError(f"trial {trial.number}: no finite {key} to score")
            trial.set_user_attr(METRIC_ATTR, key)
            values[str(seed)] = float(value)
            best_runs[str(seed)] = run_dir
            records.append(result.best)
        if self.seeds:
            summary = {"seeds": seeds, "runs": dict(zip(map(str, seeds), records))}
            summary["metrics"] = summarize_metrics(records)
            write_json(trial_dir / "summary.json", summary)
        best_seed = max(values, key=lambda seed: values[seed])  # ties: the first seed
        trial.set_user_attr(SEED_VALUES_ATTR, values)
        trial.set_user_attr(BEST_RUN_ATTR, str(best_runs[best_seed].relative_to(self.output)))
        return sum(values.values()) / len(values)

    def _is_surplus(self, trial) -> bool:
        if self.trials is None:
            return False
        before = [
            other
            for other in trial.study.get_trials(deepcopy=False, states=self._counted)
            if other.number < trial.number
        ]
        return len(before) >= self.trials


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
