"""Each task's default recipe: the learning rate, epochs and warmup that won a search on dev.

``bertfit train --task NAME`` starts from these before a ``--config`` file, flags and
``KEY=VALUE`` overrides (each of which wins over them). The grid, every run's result and how
they were measured are in ``docs/results.md`` (``bench/recipe_search.py`` reruns it). Tasks
without a searched recipe (QQP, MNLI, QNLI, WNLI and users' own data) keep
:class:`~bertfit.train.config.RunConfig`'s defaults: learning rate 5e-5, 3 epochs, warmup 0.1.

This module does not import torch.
"""

from __future__ import annotations

from typing import Any

from bertfit.data.tasks import get_task
from bertfit.errors import ConfigError

# Canonical task name -> dotted config keys. Searched with the packaged all-MiniLM-L6-v2,
# batch 32, max length 128, 3 seeds per cell (docs/results.md).
TASK_RECIPES: dict[str, dict[str, Any]] = {
    # 0.824 ± 0.009 dev accuracy against 0.786 ± 0.008 for 5e-5 x 3 epochs.
    "mrpc": {
        "optimizer.learning_rate": 1e-4,
        "trainer.epochs": 5,
        "optimizer.warmup_fraction": 0.06,
    },
    "stsb": {
        "optimizer.learning_rate": 1e-4,
        "trainer.epochs": 5,
        "optimizer.warmup_fraction": 0.1,
    },
    # 67k pairs: one epoch is most of the gain on a CPU budget.
    "sst2": {
        "optimizer.learning_rate": 5e-5,
        "trainer.epochs": 1,
        "optimizer.warmup_fraction": 0.1,
    },
    "rte": {
        "optimizer.learning_rate": 1e-4,
        "trainer.epochs": 10,
        "optimizer.warmup_fraction": 0.1,
    },
    "cola": {
        "optimizer.learning_rate": 5e-5,
        "trainer.epochs": 5,
        "optimizer.warmup_fraction": 0.1,
    },
}


def task_recipe(task: str | None) -> dict[str, Any]:
    """The dotted-key defaults of ``task`` (any spelling GLUE uses); empty when none."""
    if not task:
        return {}
    try:
        name = get_task(task).name
    except ConfigError:
        return {}  # an unknown name fails later, where the task is looked up, with its message
    return dict(TASK_RECIPES.get(name, {}))
