"""What a search varies: dotted config keys with ranges or choices.

The default space (:func:`default_space`) covers the settings that matter most when
fine-tuning on small data: the learning rate (log scale), epochs, warmup, weight decay,
batch size, layer-wise learning-rate decay and re-initialized top layers. ``--space FILE``
replaces it with a YAML mapping of the keys ``bertfit config keys`` lists::

    optimizer.learning_rate: {low: 1e-5, high: 3e-4, log: true}
    trainer.epochs: {low: 2, high: 6}
    trainer.batch_size: {choices: [16, 32]}
    optimizer:                      # sections may nest instead of dotted keys
      warmup_fraction: {low: 0.0, high: 0.2}

A range is ``low`` and ``high`` (both included), with ``log: true`` for a log scale and
``step`` for a grid; an integer key draws integers. ``choices`` lists values instead. Every
bound and choice is checked against the run config before any trial runs, so a search never
starts with a value a run would refuse.

A key the command line fixes (a flag or ``KEY=VALUE``) is left out: see
:meth:`SearchSpace.without`. This module does not import torch or Optuna.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bertfit.errors import ConfigError
from bertfit.train.config import RunConfig
from bertfit.train.config_file import (
    _Loader,
    _unknown_key,
    apply_overrides,
    config_keys,
    load_yaml,
)

_SPEC_FIELDS = ("low", "high", "log", "step", "choices")
# Re-initialized layers the default space tries at most (Zhang et al. 2021 find 1-6 of
# BERT-large's 24 layers; the packaged MiniLM has 6).
MAX_DEFAULT_REINIT = 2
# Setting the first key makes the second meaningless: warmup_steps overrides warmup_fraction.
_SHADOWED_BY = {"optimizer.warmup_fraction": ("optimizer", "warmup_steps")}


@dataclass(frozen=True)
class Param:
    """One searched key: a range (``low``..``high``, ``log``, ``step``) or ``choices``."""

    key: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple | None = None
    integer: bool = False

    def suggest(self, trial) -> Any:
        """This key's value for an Optuna ``trial``."""
        if self.choices is not None:
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.integer:
            step = int(self.step or 1)
            return trial.suggest_int(
                self.key, int(self.low), int(self.high), step=step, log=self.log
            )
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is one this key can take (the starting recipe may not be)."""
        if self.choices is not None:
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and value != int(value):
            return False
        return self.low <= value <= self.high

    def candidates(self) -> list[Any]:
        """The values that bound this key: its choices, or its two ends."""
        return list(self.choices) if self.choices is not None else [self.low, self.high]

    def to_dict(self) -> dict[str, Any]:
        """As a space file writes it."""
        if self.choices is not None:
            return {"choices": list(self.choices)}
        spec: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.log:
            spec["log"] = True
        if self.step is not None:
            spec["step"] = self.step
        return spec

    def describe(self) -> str:
        """``key in [low, high] (log)`` or ``key in {a, b}``: the console's line."""
        if self.choices is not None:
            return f"{self.key} in {{{', '.join(map(str, self.choices))}}}"
        scale = " (log)" if self.log else ""
        return f"{self.key} in [{self.low:g}, {self.high:g}]{scale}"


@dataclass(frozen=True)
class SearchSpace:
    """The searched keys, in order."""

    params: tuple[Param, ...]

    @property
    def keys(self) -> list[str]:
        return [param.key for param in self.params]

    def suggest(self, trial) -> dict[str, Any]:
        """Every key's value for an Optuna ``trial``, by dotted key."""
        return {param.key: param.suggest(trial) for param in self.params}

    def without(self, fixed: Iterable[str], config: RunConfig) -> tuple[SearchSpace, list[str]]:
        """This space less the keys in ``fixed`` and those ``config`` makes meaningless (a
        warmup fraction when warmup steps are set); also the keys left out."""
        fixed = set(fixed)
        data = config.to_dict()
        for key, (section, other) in _SHADOWED_BY.items():
            if data[section][other] is not None:
                fixed.add(key)
        kept = tuple(param for param in self.params if param.key not in fixed)
        dropped = [param.key for param in self.params if param.key in fixed]
        return SearchSpace(kept), dropped

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """As a space file writes it: dotted key -> range or choices."""
        return {param.key: param.to_dict() for param in self.params}

    def check(self, config: RunConfig, where: str = "space") -> None:
        """Raise :class:`ConfigError` if a bound or choice is a value ``config`` refuses."""
        base = config.to_dict()
        for param in self.params:
            for value in param.candidates():
                try:
                    data = apply_overrides(base, [(param.key, value)], where)
                    RunConfig.from_dict(data, where).validate()
                except ConfigError as error:
                    raise ConfigError(
                        f"{where}: {param.key}: {value!r} is refused: {error}"
                    ) from None


def default_space(num_layers: int) -> SearchSpace:
    """The space searched without ``--space``, for an encoder of ``num_layers`` layers.

    Ranges around what works for BERT-family encoders on GLUE-sized data (the packaged
    MiniLM's recipes in :mod:`bertfit.train.recipes` lie inside them).
    """
    return SearchSpace(
        (
            Param("optimizer.learning_rate", 1e-5, 3e-4, log=True),
            Param("trainer.epochs", 2, 6, integer=True),
            Param("optimizer.warmup_fraction", 0.0, 0.2),
            Param("optimizer.weight_decay", 0.0, 0.1),
            Param("trainer.batch_size", choices=(16, 32)),
            Param("optimizer.layer_decay", 0.7, 1.0),
            Param("reinit_layers", 0, min(MAX_DEFAULT_REINIT, num_layers), integer=True),
        )
    )


# -- reading a space file -----------------------------------------------------------------------


def read_space(path: str | Path) -> SearchSpace:
    """The space in a YAML file; :class:`ConfigError` naming the file, the line and the key for
    an unknown key, an empty range, or a spec that is not a range or choices."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: space file not found") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror})") from None
    data = load_yaml(text, str(path))  # errors name the file and line
    if data is None:
        raise ConfigError(f"{path}: an empty space; give keys with ranges or choices")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys to ranges or choices")
    node = yaml.compose(text, Loader=_Loader)  # parsed already: only for the keys' lines
    lines = _key_lines(node)
    specs = _flatten(data)
    keys = config_keys()
    params = []
    for key, spec in specs.items():
        where = f"{path}, line {lines.get(key, 1)}"
        if key not in keys:
            raise _unknown_key(key, keys, where)
        params.append(parse_param(key, spec, keys[key], f"{where}: {key}"))
    if not params:
        raise ConfigError(f"{path}: an empty space; give keys with ranges or choices")
    return SearchSpace(tuple(params))


def _is_spec(value: Any) -> bool:
    return isinstance(value, Mapping) and any(name in value for name in _SPEC_FIELDS)


def _flatten(data: Mapping, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> spec, from dotted keys or nested sections."""
    flat = {}
    for name, value in data.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping) and value and not _is_spec(value):
            flat.update(_flatten(value, key + "."))
        else:
            flat[key] = value
    return flat


def _key_lines(node, prefix: str = "") -> dict[str, int]:
    """Dotted key -> its 1-based line in the file (from the composed YAML nodes)."""
    lines = {}
    if not isinstance(node, yaml.MappingNode):
        return lines
    for key_node, value_node in node.value:
        key = f"{prefix}{key_node.value}"
        lines[key] = key_node.start_mark.line + 1
        lines.update(_key_lines(value_node, key + "."))
    return lines


def _numeric_kind(annotation: Any) -> type | None:
    """``int`` or ``float`` for a key that takes a number (maybe None), else None."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kinds = [arg for arg in args if arg is not type(None)]
        return kinds[0] if kinds in ([int], [float]) else None
    return annotation if annotation in (int, float) else None


def parse_param(key: str, spec: Any, annotation: Any, where: str) -> Param:
    """One key's spec: ``{low, high[, log][, step]}`` or ``{choices: [...]}``."""
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"{where}: expected a range {{low: A, high: B}} or {{choices: [A, B]}}, got {spec!r}"
        )
    unknown = [name for name in spec if name not in _SPEC_FIELDS]
    if unknown:
        raise ConfigError(
            f"{where}: unknown field {unknown[0]!r} (expected {', '.join(_SPEC_FIELDS)})"
        )
    kind = _numeric_kind(annotation)
    if "choices" in spec:
        if set(spec) != {"choices"}:
            raise ConfigError(f"{where}: give choices or a range (low, high), not both")
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: empty choices; list one or more values")
        for choice in choices:
            if choice is not None and not isinstance(choice, (bool, int, float, str)):
                raise ConfigError(f"{where}: a choice must be a number, text, true/false or null")
        if len(set(map(repr, choices))) != len(choices):
            raise ConfigError(f"{where}: choices repeat a value")
        return Param(key, choices=tuple(choices))
    if kind is None:
        raise ConfigError(f"{where}: not a number; search it with choices: [...]")
    low, high = spec.get("low"), spec.get("high")
    for name, value in (("low", low), ("high", high)):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise ConfigError(f"{where}: {name} must be a number, got {value!r}")
        if kind is int and value != int(value):
            raise ConfigError(f"{where}: {name} must be a whole number, got {value!r}")
    if not low < high:
        raise ConfigError(
            f"{where}: empty range (low {low:g} is not below high {high:g}); a value to keep "
            "fixed goes on the command line as a flag or KEY=VALUE"
        )
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log must be true or false, got {log!r}")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log scale needs low above 0, got {low:g}")
    step = spec.get("step")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, (int, float)) or not step > 0:
            raise ConfigError(f"{where}: step must be a positive number, got {step!r}")
        if log:
            raise ConfigError(f"{where}: give log or step, not both")
        if kind is int and step != int(step):
            raise ConfigError(f"{where}: step must be a whole number, got {step!r}")
    if kind is int:
        return Param(
            key, int(low), int(high), log, None if step is None else int(step), integer=True
        )
    return Param(key, float(low), float(high), log, None if step is None else float(step))
