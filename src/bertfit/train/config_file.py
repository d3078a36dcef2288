"""Run configs from YAML or JSON files, with dotted overrides from the command line.

A config file holds any part of a :class:`~bertfit.train.config.RunConfig`; what it leaves out
keeps its default::

    task: mrpc
    trainer:
      epochs: 5
    optimizer:
      learning_rate: 3e-5

Overrides name a key by its dotted path (``optimizer.learning_rate=3e-5 trainer.epochs=5``).
Unknown keys and values of the wrong type are :class:`ConfigError` naming the key and the
nearest valid one. :func:`bertfit.train.run.resolve_run_config` fills in what a run derives
(the task's data directory, the model directory, the schedule's ``total_steps``), giving the
same config a run writes to ``RUN/config.json``; fed back through ``--config`` that file
repeats the run exactly.

This module does not import torch.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import types
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from bertfit.config import _check_type, read_json
from bertfit.errors import ConfigError
from bertfit.train.config import RunConfig
from bertfit.train.recipes import task_recipe

CONFIG_FILE = "config.json"
YAML_SUFFIXES = (".yaml", ".yml")

Override = tuple[str, Any]


# -- reading files ------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``3e-5`` as a number, as YAML 1.2 and JSON do.

    PyYAML follows YAML 1.1, where a float needs a dot, so ``learning_rate: 3e-5`` would
    arrive as the string ``"3e-5"``.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML text safely; errors name ``source`` and the line."""
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no objects
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"{source}: not valid YAML ({where}{problem})") from None


def config_file_path(path: str | Path) -> Path:
    """The config file ``path`` names: the file itself, or a run directory's ``config.json``."""
    path = Path(path).expanduser()
    if path.is_dir():
        if not (path / CONFIG_FILE).is_file():
            raise ConfigError(f"{path}: a directory without {CONFIG_FILE}; not a run directory")
        return path / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    return path


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML (``.yaml``/``.yml``) or JSON file, or in a run's ``config.json``."""
    path = config_file_path(path)
    if path.suffix.lower() in YAML_SUFFIXES:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"{path}: cannot read ({error.strerror})") from None
        data = load_yaml(text, str(path))
        data = {} if data is None else data  # an empty file: all defaults
    elif path.suffix.lower() == ".json":
        data = read_json(path)
    else:
        raise ConfigError(f"{path}: expected a .yaml, .yml or .json config file")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return data


def dump_config(data: dict[str, Any], fmt: str = "json") -> str:
    """``data`` as JSON (as ``RUN/config.json`` is written) or YAML text."""
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    if fmt == "yaml":
        return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    raise ConfigError(f"unknown config format {fmt!r}; expected 'json' or 'yaml'")


# -- keys ---------------------------------------------------------------------------------------


def config_keys(cls: type = RunConfig, prefix: str = "") -> dict[str, Any]:
    """Every settable dotted key of ``cls`` (nested dataclasses flattened) and its type."""
    keys: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        annotation = hints[field.name]
        name = prefix + field.name
        if dataclasses.is_dataclass(annotation):
            keys.update(config_keys(annotation, name + "."))
        else:
            keys[name] = annotation
    return keys


def config_defaults() -> dict[str, Any]:
    """The default :class:`RunConfig` as a plain dict."""
    return RunConfig().to_dict()


def describe_keys() -> list[tuple[str, str, Any]]:
    """Every dotted key with its type's name and its default: ``bertfit config keys``."""
    defaults = config_defaults()
    rows = []
    for key, annotation in config_keys().items():
        value = defaults
        for part in key.split("."):
            value = value[part]
        rows.append((key, _type_name(annotation), value))
    return rows


def _type_name(annotation: Any) -> str:
    """A key's type as ``config keys`` lists it: ``int | None``, ``'balanced' | dict | None``."""
    if typing.get_origin(annotation) is typing.Union:
        return " | ".join(_type_name(arg) for arg in typing.get_args(annotation))
    if typing.get_origin(annotation) is typing.Literal:
        return " | ".join(repr(arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


# Short names people type for a key; suggestions look them up before guessing.
_ALIASES = {"lr": "learning_rate", "bs": "batch_size", "wd": "weight_decay", "steps": "max_steps"}


def suggest_key(key: str, valid: Iterable[str]) -> str | None:
    """The valid dotted key nearest to ``key`` (a typo, an alias such as ``lr``, a flag's
    spelling such as ``batch-size``, or a leaf named without its section)."""
    valid = list(valid)
    *section, leaf = key.replace("-", "_").split(".")
    leaf = _ALIASES.get(leaf, leaf)
    spelled = ".".join([*section, leaf])
    if spelled in valid:
        return spelled
    close = difflib.get_close_matches(spelled, valid, n=1, cutoff=0.6)
    if close:
        return close[0]
    leaves = {name.rsplit(".", 1)[-1]: name for name in valid}
    close = difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.6)
    return leaves[close[0]] if close else None


def _unknown_key(key: str, valid: Iterable[str], where: str) -> ConfigError:
    nearest = suggest_key(key, valid)
    hint = f" (did you mean {nearest!r}?)" if nearest else ""
    return ConfigError(f"{where}: unknown key {key!r}{hint}; `bertfit config keys` lists them")


# -- overrides ----------------------------------------------------------------------------------


def parse_overrides(texts: Sequence[str]) -> list[Override]:
    """``["trainer.epochs=5", ...]`` -> ``[("trainer.epochs", "5"), ...]`` (values still text)."""
    overrides = []
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or not key.strip() or key != key.strip():
            raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. trainer.epochs=5")
        overrides.append((key, value))
    return overrides


def _accepts_str(annotation: Any) -> bool:
    """Whether a field of this type takes text as written (a path, a name, a choice)."""
    origin = typing.get_origin(annotation)
    if annotation is str or origin is typing.Literal:
        return True
    if origin is typing.Union or origin is types.UnionType:
        return any(_accepts_str(arg) for arg in typing.get_args(annotation))
    return False


def parse_value(text: str, annotation: Any = Any) -> Any:
    """A command-line value for a field of type ``annotation``.

    Text fields take the text as written (``null`` or ``none`` clear an optional one); other
    fields read it as a YAML scalar or flow list: ``3e-5``, ``5``, ``true``, ``null``,
    ``[LayerNorm, bias]``.
    """
    optional = type(None) in typing.get_args(annotation)
    if optional and text.strip().lower() in ("null", "none", "~"):
        return None
    if _accepts_str(annotation):
        try:
            return _check_type(text, annotation, "value")
        except ConfigError:
            # A field that takes a word or a mapping (trainer.class_weights) reads the rest
            # as YAML; a field that takes text alone keeps it, for the type check to name.
            if not _accepts_mapping(annotation):
                return text
    return load_yaml(text, f"value {text!r}")


def _accepts_mapping(annotation: Any) -> bool:
    """Whether a field of this type (or one member of its union) takes a mapping."""
    if typing.get_origin(annotation) is dict:
        return True
    return any(_accepts_mapping(arg) for arg in typing.get_args(annotation))


def apply_overrides(
    data: dict[str, Any], overrides: Sequence[Override], where: str = "override"
) -> dict[str, Any]:
    """A copy of ``data`` (a RunConfig dict) with each ``(dotted key, value)`` set.

    Text values are parsed for the key's type (see :func:`parse_value`); every value is
    type-checked here, so an error names the override rather than the merged config.
    """
    keys = config_keys()
    sections = {key.rsplit(".", 1)[0] for key in keys if "." in key}
    result = json.loads(json.dumps(data))  # a deep copy of plain JSON data
    for key, value in overrides:
        if key in sections:
            example = next(k for k in keys if k.startswith(key + "."))
            raise ConfigError(
                f"{where} {key}: {key!r} is a section; set its keys one by one, e.g. {example}"
            )
        if key not in keys:
            raise _unknown_key(key, keys, f"{where} {key}")
        annotation = keys[key]
        if isinstance(value, str):
            value = parse_value(value, annotation)
        _check_type(value, annotation, f"{where} {key}")
        node = result
        *parents, leaf = key.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[leaf] = value
    return result


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_run_config(
    path: str | Path | None = None, overrides: Sequence[Override] = ()
) -> RunConfig:
    """The :class:`RunConfig` of a config file (or the defaults) with ``overrides`` applied.

    Keys the file leaves out keep :class:`RunConfig`'s defaults (the optimizer's included, so a
    partial ``optimizer:`` section still starts from bertfit's learning rate), with the task's
    own recipe on top (see :mod:`bertfit.train.recipes`): defaults, recipe, file, overrides.
    """
    data = config_defaults()
    source = "config"
    if path is not None:
        source = str(config_file_path(path))
        file_data = read_config_file(path)
        data = _deep_merge(data, file_data)
        RunConfig.from_dict(data, where=source)  # errors in the file name the file
        data = _deep_merge(_with_task_recipe(config_defaults(), data, overrides), file_data)
    else:
        data = _with_task_recipe(data, data, overrides)
    if not overrides:
        return RunConfig.from_dict(data, where=source)
    data = apply_overrides(data, overrides)
    try:
        return RunConfig.from_dict(data, where="override")
    except ConfigError as error:
        # Range checks run on the merged config; name the override, as the type checks do.
        message = str(error)
        if message.startswith("override."):
            message = "override " + message[len("override.") :]
        raise ConfigError(message) from None


def _with_task_recipe(
    defaults: dict[str, Any], data: dict[str, Any], overrides: Sequence[Override]
) -> dict[str, Any]:
    """``defaults`` with the recipe of the task that ``data`` and ``overrides`` name."""
    final = dict(data)
    for key, value in overrides:  # the task may come from --task, or task=..., or the file
        if key == "task":
            final["task"] = value
        if key == "data.train_file":
            final["data"] = {**final.get("data", {}), "train_file": value}
    if final.get("data", {}).get("train_file") is not None:
        return defaults  # the user's own files: no GLUE task's recipe
    return apply_overrides(defaults, list(task_recipe(final.get("task")).items()), "recipe")
