"""Each default has one home: the config dataclasses. The CLI's flags and help texts and the
Python API's keyword defaults read it from there, so changing a default changes all of them."""

from __future__ import annotations

import dataclasses
import inspect

from bertfit.cli import build_parser
from bertfit.train.config import (
    DEFAULT_STUDENT_LAYERS,
    DistillConfig,
    RunConfig,
    TrainerConfig,
    UserDataConfig,
)
from bertfit.train.recipes import TASK_RECIPES
from bertfit.train.student_run import distill_config, distill_run

# distill's flags and keywords that set a DistillConfig field of the same name.
DISTILL_OPTIONS = (
    "init",
    "temperature",
    "alpha",
    "augment",
    "augment_rate",
    "layer_weight",
    "token_weight",
)


def _subcommand(name: str):
    parser = build_parser()
    for action in parser._subparsers._group_actions:
        if name in action.choices:
            return action.choices[name]
    raise AssertionError(f"no subcommand {name}")


def _option(parser, dest: str):
    return next(action for action in parser._actions if action.dest == dest)


def test_distill_keyword_defaults_are_the_config_dataclass_defaults():
    defaults = DistillConfig()
    for function in (distill_config, distill_run):
        parameters = inspect.signature(function).parameters
        for name in DISTILL_OPTIONS:
            assert parameters[name].default == getattr(defaults, name), (function, name)
        assert parameters["layers"].default == DEFAULT_STUDENT_LAYERS


def test_distill_flag_defaults_are_the_config_dataclass_defaults():
    distill = _subcommand("distill")
    defaults = DistillConfig()
    for name in DISTILL_OPTIONS:
        assert _option(distill, name).default == getattr(defaults, name), name
    assert _option(distill, "layers").default == DEFAULT_STUDENT_LAYERS


def test_every_distill_option_is_a_config_field():
    fields = {field.name for field in dataclasses.fields(DistillConfig)}
    assert set(DISTILL_OPTIONS) <= fields


def test_train_help_names_the_config_defaults_and_each_recipe():
    train = _subcommand("train")
    trainer, run, data = TrainerConfig(), RunConfig(), UserDataConfig()
    epochs = _option(train, "epochs").help
    for task, recipe in TASK_RECIPES.items():
        assert f"{task} {recipe['trainer.epochs']}" in epochs
    assert epochs.endswith(f"otherwise {trainer.epochs})")
    learning_rate = _option(train, "learning_rate").help
    assert f"otherwise {run.optimizer.learning_rate:g})" in learning_rate
    assert f"(default: {trainer.batch_size})" in _option(train, "batch_size").help
    assert f"(default: {run.max_seq_length})" in _option(train, "max_seq_length").help
    assert f"(default: {trainer.seed})" in _option(train, "seed").help
    assert f"(default: {run.task})" in _option(train, "task").help
    assert f"(default: {data.text_a})" in _option(train, "text_a").help
    assert f"(default: {data.label})" in _option(train, "label").help
    assert f"(default: {trainer.keep_checkpoints})" in _option(train, "keep_checkpoints").help


def test_evaluation_batch_size_flags_default_to_the_trainers():
    for command in ("evaluate", "predict", "calibrate"):
        batch_size = _option(_subcommand(command), "batch_size")
        assert batch_size.default == TrainerConfig().eval_batch_size, command
