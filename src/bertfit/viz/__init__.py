"""Figures of what bertfit computes: the learning-rate schedule, packed inputs, training
history, confusion matrices, word attributions and hyperparameter searches.

* :mod:`bertfit.viz.data`: the numbers each figure draws (no matplotlib, no torch);
* :mod:`bertfit.viz.figures`: matplotlib figures of those numbers, drawn headless;
* :mod:`bertfit.viz.plots`: one call per figure from a run, config file, model or preset,
  as ``bertfit plot`` runs them.

Names are imported lazily, so ``import bertfit.viz`` loads neither matplotlib nor torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "schedule_data": "data",
    "inputs_data": "data",
    "read_history": "data",
    "confusion_matrix": "data",
    "confusion_data": "data",
    "ScheduleData": "data",
    "InputsData": "data",
    "HistoryData": "data",
    "ConfusionData": "data",
    "schedule_figure": "figures",
    "inputs_figure": "figures",
    "history_figure": "figures",
    "confusion_figure": "figures",
    "explanation_figure": "figures",
    "tune_figure": "figures",
    "save_figure": "figures",
    "plot_schedule": "plots",
    "plot_inputs": "plots",
    "plot_history": "plots",
    "plot_confusion": "plots",
    "plot_tune": "plots",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
