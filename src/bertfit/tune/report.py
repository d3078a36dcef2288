"""The numbers ``bertfit plot tune RUN`` draws: each trial's value, the best so far, and how
much each searched key mattered (Optuna's fANOVA importances).

Importances need two or more COMPLETE trials with different values; otherwise Optuna would
return equal shares that mean nothing, so :class:`TuneData` carries a note instead.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import optuna

from bertfit.config import read_json
from bertfit.errors import ConfigError
from bertfit.tune.objective import METRIC_ATTR
from bertfit.tune.outputs import TUNE_FILE, listed_trials
from bertfit.tune.storage import open_storage, storage_url


@dataclass
class TuneData:
    """A study's trials in number order and, where they can be computed, its importances."""

    study: str
    metric: str
    numbers: list[int]
    states: list[str]
    values: list[float | None]
    best_so_far: list[float | None]  # the best COMPLETE value up to each trial
    importances: dict[str, float] | None
    note: str | None  # why there are no importances

    def to_dict(self) -> dict:
        """JSON-ready (``--data``)."""
        return asdict(self)


def load_tune_study(run: str | Path):
    """The study of a tune's output folder, from its ``tune.json``."""
    run = Path(run)
    if not (run / TUNE_FILE).is_file():
        raise ConfigError(
            f"{run}: not a tune folder (no {TUNE_FILE}); give bertfit tune's --output"
        )
    settings = read_json(run / TUNE_FILE)
    if settings.get("storage") and "***" in settings["storage"]:
        raise ConfigError(
            f"{run}: its study is in {settings['storage']}, whose password is not stored; "
            "plot it where bertfit tune --storage ran"
        )
    url = storage_url(settings.get("storage"), run)
    storage = open_storage(url, shared=False)
    try:
        return optuna.load_study(study_name=settings["study"], storage=storage)
    except KeyError:
        raise ConfigError(f"{run}: no study {settings['study']!r} in its storage") from None


def tune_data(run: str | Path) -> TuneData:
    """The numbers of ``bertfit plot tune RUN``."""
    study = load_tune_study(run)
    trials = listed_trials(study)
    complete = optuna.trial.TrialState.COMPLETE
    numbers, states, values, best_so_far = [], [], [], []
    best = None
    metric = "value"
    for trial in trials:
        value = trial.value if trial.value is not None and math.isfinite(trial.value) else None
        if trial.state == complete and value is not None:
            best = value if best is None else max(best, value)
            metric = trial.user_attrs.get(METRIC_ATTR, metric)
        numbers.append(trial.number)
        states.append(trial.state.name)
        values.append(value)
        best_so_far.append(best)
    importances, note = _importances(study, trials)
    return TuneData(
        study.study_name, metric, numbers, states, values, best_so_far, importances, note
    )


def _importances(study, trials) -> tuple[dict[str, float] | None, str | None]:
    finished = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    scores = {t.value for t in finished if t.value is not None and math.isfinite(t.value)}
    if len(scores) < 2:
        shown = f"{len(finished)} complete trial{'s' * (len(finished) != 1)}"
        same = ", all with the same value" if len(finished) > 1 else ""
        return None, f"importances need complete trials with different values ({shown}{same})"
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except ImportError:  # fANOVA fits scikit-learn's random forest (in the tune extra)
        return None, "importances need scikit-learn: pip install 'bertfit[tune]'"
    except (ValueError, RuntimeError) as error:
        return None, f"importances could not be computed ({error})"
    return {key: float(value) for key, value in importances.items()}, None
