"""Each task's searched default recipe, and what wins over it."""

from __future__ import annotations

import pytest

from bertfit.train.config_file import load_run_config
from bertfit.train.recipes import task_recipe


def test_mrpc_defaults_to_its_searched_recipe():
    config = load_run_config(None, [("task", "mrpc")])
    assert config.optimizer.learning_rate == 1e-4
    assert config.trainer.epochs == 5
    assert config.optimizer.warmup_fraction == 0.06
    assert load_run_config(None, []).optimizer.learning_rate == 1e-4  # mrpc is the default task


@pytest.mark.parametrize("spelling", ["sts-b", "STSB", "stsb"])
def test_recipes_follow_any_spelling_of_the_task(spelling):
    config = load_run_config(None, [("task", spelling)])
    assert (config.optimizer.learning_rate, config.trainer.epochs) == (1e-4, 5)


def test_tasks_without_a_recipe_keep_the_general_defaults():
    config = load_run_config(None, [("task", "qqp")])
    assert (config.optimizer.learning_rate, config.trainer.epochs) == (5e-5, 3)
    assert task_recipe("no-such-task") == {}  # the unknown name is refused later, by get_task


def test_flags_overrides_and_files_win_over_the_recipe(tmp_path):
    flags = [("task", "mrpc"), ("optimizer.learning_rate", 3e-5), ("trainer.epochs", "2")]
    config = load_run_config(None, flags)
    assert (config.optimizer.learning_rate, config.trainer.epochs) == (3e-5, 2)
    assert config.optimizer.warmup_fraction == 0.06  # what was not overridden stays the recipe's
    config_file = tmp_path / "run.yaml"
    config_file.write_text("task: rte\ntrainer:\n  epochs: 4\n")
    config = load_run_config(config_file)
    assert (config.task, config.trainer.epochs, config.optimizer.learning_rate) == ("rte", 4, 1e-4)


def test_users_own_files_get_no_task_recipe():
    config = load_run_config(None, [("data.train_file", "train.csv")])
    assert (config.optimizer.learning_rate, config.trainer.epochs) == (5e-5, 3)
