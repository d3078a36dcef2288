"""What a search leaves in its output folder, rewritten after every trial:

* ``trials.csv``: one row per trial of the study (``number``, ``state`` as Optuna names it,
  ``value``, each searched key, ``seconds``);
* ``best.yaml``: the study's best trial as a run config that ``bertfit train --config`` takes
  unchanged: the starting config with the trial's values;
* ``best/``: the run directory of the best trial this process ran (its model, model card,
  config, results); the other trials keep their ``trials/N/`` files but not their weights,
  so the disk holds one model however long the search;
* ``tune.json``: the study's name, storage and space, which ``bertfit plot tune`` reads.

Every file is written atomically.
"""

from __future__ import annotations

import csv
import io
import math
import shutil
from pathlib import Path
from typing import Any

import optuna

from bertfit.config import (
    atomic_write_text,
    make_staging_dir,
    read_json,
    replace_directory,
    write_json,
)
from bertfit.model_card import write_model_card
from bertfit.train.config import RunConfig
from bertfit.train.config_file import dump_config
from bertfit.tune.objective import (
    BEST_RUN_ATTR,
    METRIC_ATTR,
    SURPLUS_ATTR,
    TRIALS_DIR,
    remove_weights,
    trial_config,
)

TRIALS_CSV = "trials.csv"
BEST_YAML = "best.yaml"
BEST_DIR = "best"
BEST_TRIAL_FILE = "trial.json"  # in best/: which trial it is and its value
TUNE_FILE = "tune.json"
# Keys that hold paths: made absolute in best.yaml so it works from any directory.
_PATH_KEYS = (("model",), ("data_dir",), ("data", "train_file"), ("data", "dev_file"))


def listed_trials(study) -> list:
    """The study's trials as ``trials.csv`` lists them: all but surplus ones (failed unrun)."""
    return [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get(SURPLUS_ATTR)]


def trial_seconds(trial) -> float | None:
    """A finished trial's wall time (start to end), None while it runs."""
    if trial.datetime_start is None or trial.datetime_complete is None:
        return None
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def trials_table(study, keys: list[str]) -> str:
    """``trials.csv``'s text: number, state, value, each key in ``keys``, seconds."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["number", "state", "value", *keys, "seconds"])
    for trial in listed_trials(study):
        seconds = trial_seconds(trial)
        writer.writerow(
            [
                trial.number,
                trial.state.name,
                "" if trial.value is None else repr(float(trial.value)),
                *(_cell(trial.params.get(key)) for key in keys),
                "" if seconds is None else f"{seconds:.1f}",
            ]
        )
    return buffer.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def best_trial(study):
    """The COMPLETE trial with the highest value (the earliest of equals), or None."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    finite = [t for t in complete if t.value is not None and math.isfinite(t.value)]
    return max(finite, key=lambda t: (t.value, -t.number), default=None)


def best_config(base: RunConfig, params: dict[str, Any]) -> dict[str, Any]:
    """The run config of the best trial: ``base`` with its values, paths made absolute."""
    data = trial_config(base, params).to_dict()
    for path in _PATH_KEYS:
        *sections, leaf = path
        node = data
        for section in sections:
            node = node[section]
        value = node.get(leaf)
        if isinstance(value, str) and Path(value).expanduser().exists():
            node[leaf] = str(Path(value).expanduser().resolve())
    return data


def best_yaml_text(study, base: RunConfig, seeds: list[int] | None) -> str | None:
    """``best.yaml``'s text (a comment saying which trial, then the config); None before any
    trial completes."""
    best = best_trial(study)
    if best is None:
        return None
    metric = best.user_attrs.get(METRIC_ATTR, "the main dev metric")
    over = f" (mean over seeds {', '.join(map(str, seeds))})" if seeds else ""
    header = (
        f"# bertfit tune: the best trial of study {study.study_name!r}: trial {best.number}, "
        f"{metric} {best.value:.4f}{over}.\n"
        "# Train it: bertfit train --config best.yaml --output RUN\n"
    )
    return header + dump_config(best_config(base, best.params), "yaml")


class Outputs:
    """The files of one output folder, kept up to date as trials finish."""

    def __init__(self, output: Path, base: RunConfig, keys: list[str], seeds) -> None:
        self.output = output
        self.base = base
        self.keys = keys
        self.seeds = list(seeds) if seeds else None

    def write_settings(self, settings: dict[str, Any]) -> None:
        """``tune.json``: what ``bertfit plot tune`` needs to find the study."""
        write_json(self.output / TUNE_FILE, settings)

    def update(self, study) -> None:
        """Keep or drop the weights of every trial of this folder that has finished, then
        rewrite ``trials.csv`` and ``best.yaml`` from the whole study."""
        self.settle(study)
        atomic_write_text(self.output / TRIALS_CSV, trials_table(study, self.keys))
        text = best_yaml_text(study, self.base, self.seeds)
        if text is not None:
            atomic_write_text(self.output / BEST_YAML, text)

    def settle(self, study) -> None:
        """For each finished trial of this folder that still has weights: make it ``best/``
        if it beats the one there, else delete them. Also after a crash between a trial's end
        and this, so no model is left behind."""
        restore_best(self.output)
        trials_dir = self.output / TRIALS_DIR
        if not trials_dir.is_dir():
            return
        by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
        for folder in sorted(trials_dir.iterdir(), key=lambda p: (len(p.name), p.name)):
            trial = by_number.get(int(folder.name)) if folder.name.isdigit() else None
            if trial is None or not trial.state.is_finished() or not _has_weights(folder):
                continue
            if trial.state == optuna.trial.TrialState.COMPLETE and self._beats_kept(trial):
                self._keep(trial, study.study_name)
            for run_dir in [folder, *folder.glob("seed-*")]:
                remove_weights(run_dir)

    def _beats_kept(self, trial) -> bool:
        kept = kept_best(self.output)
        if trial.value is None or not math.isfinite(trial.value):
            return False
        return kept is None or trial.value > kept["value"]

    def _keep(self, trial, study_name: str) -> None:
        """Make the trial's best run ``best/``: its small files copied, its model moved."""
        source = self.output / trial.user_attrs[BEST_RUN_ATTR]
        staging = make_staging_dir(self.output / BEST_DIR)
        for item in source.iterdir():
            if item.is_file():
                shutil.copy2(item, staging / item.name)
        (source / "model").rename(staging / "model")
        record = {"study": study_name, "trial": trial.number, "value": trial.value}
        record["run"] = trial.user_attrs[BEST_RUN_ATTR]
        write_json(staging / BEST_TRIAL_FILE, record)
        write_model_card(staging)  # the card describes the run where it now lives
        replace_directory(staging, self.output / BEST_DIR)


def _has_weights(folder: Path) -> bool:
    return any((run / name).exists() for run in [folder, *folder.glob("seed-*")]
               for name in ("model", "checkpoints"))  # fmt: skip


def kept_best(output: Path) -> dict | None:
    """``best/trial.json`` of an output folder: the trial whose model is kept, or None."""
    path = output / BEST_DIR / BEST_TRIAL_FILE
    return read_json(path) if path.is_file() else None


def restore_best(output: Path) -> None:
    """Put back a ``best/`` that a crash left aside in the middle of its replacement, and
    remove half-built ones (see :func:`bertfit.config.replace_directory`)."""
    best = output / BEST_DIR
    for staging in sorted(output.glob(f".{BEST_DIR}.*")):
        old = staging / "old"
        if old.is_dir() and not best.exists():
            old.rename(best)
        shutil.rmtree(staging, ignore_errors=True)
