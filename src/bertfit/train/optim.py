"""The optimizer: AdamW with decoupled weight decay, linear warmup, then polynomial decay.

This is Model Garden's ``OptimizerFactory(OptimizationConfig)`` on PyTorch. One JSON-ready
:class:`OptimizationConfig` describes the whole optimizer and its schedule, and
:func:`build_optimizer` rebuilds exactly the same optimizer from it every time.

The schedules (:class:`PolynomialDecay`, :class:`LinearWarmup`, :func:`learning_rate_schedule`)
are plain Python: they can be evaluated at any step without torch or a model. torch is imported
only inside the functions that build the live optimizer.

Model Garden's step counting, matched here on purpose:

* The decay is evaluated at the global step, not at ``step - warmup_steps``: with
  ``decay_steps = total_steps`` the decay has already run for ``warmup_steps`` steps when warmup
  ends. So the warmup climbs to ``decay(warmup_steps)``, which is
  ``learning_rate * (1 - warmup_steps / total_steps) ** power`` (0.9 x ``learning_rate`` with
  10 % warmup and linear decay), never to ``learning_rate`` itself.
* Step ``s`` is the number of updates already applied, so the first update uses ``schedule(0)``,
  which is ``warmup_learning_rate`` (0 by default), as with a Keras optimizer whose iteration
  counter starts at 0.

TensorFlow evaluates these schedules in float32; bertfit evaluates them in float64, so values
agree to float32 precision.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from bertfit.config import dataclass_from_dict, dataclass_to_dict, read_json, write_json
from bertfit.errors import ConfigError

if TYPE_CHECKING:
    import torch

# The original BERT recipe's exclusion list (regular expressions searched in parameter names).
DEFAULT_EXCLUDE_FROM_WEIGHT_DECAY = ("LayerNorm", "layer_norm", "bias")

_WHERE = "optimization"


@dataclass
class OptimizationConfig:
    """Everything that defines the optimizer and its learning-rate schedule, JSON-ready.

    The schedule is Model Garden's: a linear warmup from ``warmup_learning_rate`` over the first
    warmup steps, then a polynomial decay from ``learning_rate`` to ``end_learning_rate`` over
    ``total_steps`` steps counted from step 0 (see the module docstring for what that means for
    the peak). The optimizer is AdamW with decoupled weight decay, none on biases and norm weights.

    Attributes:
        learning_rate: initial learning rate of the polynomial decay (Model Garden's
            ``initial_learning_rate``; the tutorial uses 2e-5).
        weight_decay: decoupled weight decay rate of the decayed group.
        beta_1, beta_2, epsilon: Adam's moment decay rates and its stabiliser (1e-6 as in BERT).
        exclude_from_weight_decay: regular expressions; a parameter whose dotted name contains a
            match gets no weight decay.
        exclude_norm_and_bias: also exclude, whatever their names, every parameter whose name
            ends in ``bias`` and every 1-D parameter of a module whose class name contains
            ``Norm`` (LayerNorm, RMSNorm, BatchNorm, custom norms).
        warmup_steps: warmup length in steps; when set it overrides ``warmup_fraction``.
        warmup_fraction: warmup length as a fraction of ``total_steps``, rounded down as the
            tutorial's ``int(0.1 * num_train_steps)`` does.
        warmup_learning_rate: learning rate at step 0.
        total_steps: the decay horizon, usually epochs x steps per epoch; ``None`` until the
            trainer knows it (see :meth:`with_total_steps`).
        power: polynomial power of the decay; 1.0 is linear.
        end_learning_rate: learning rate from ``total_steps`` on.
        clip_norm: clip the global gradient norm to this before each update (``None``: never).
        implementation: torch's AdamW kernel: ``fused`` (the default: one pass over each
            parameter's weights, gradient and moments; measurably faster on a CPU), ``foreach``
            (batched elementwise ops) or ``for_loop`` (one parameter at a time).
        layer_decay: layer-wise learning-rate decay, in (0, 1]; 1.0 (the default) is off. The
            head and the pooler learn at the schedule's rate, the top encoder layer at
            ``layer_decay`` times it, each layer below at ``layer_decay`` times the one above,
            and the embeddings, below the lowest layer, at ``layer_decay ** (L + 1)`` of it
            (``L`` layers; BEiT's convention, see :func:`layer_depths`).
    """

    learning_rate: float = 2e-5
    weight_decay: float = 0.01
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-6
    exclude_from_weight_decay: list[str] = field(
        default_factory=lambda: list(DEFAULT_EXCLUDE_FROM_WEIGHT_DECAY)
    )
    exclude_norm_and_bias: bool = True
    warmup_steps: int | None = None
    warmup_fraction: float = 0.1
    warmup_learning_rate: float = 0.0
    total_steps: int | None = None
    power: float = 1.0
    end_learning_rate: float = 0.0
    clip_norm: float | None = 1.0
    implementation: Literal["foreach", "fused", "for_loop"] = "fused"
    layer_decay: float = 1.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first setting that is out of range."""
        _require(self, "learning_rate", lambda v: v > 0, "> 0")
        _require(self, "weight_decay", lambda v: v >= 0, ">= 0")
        _require(self, "beta_1", lambda v: 0 <= v < 1, "in [0, 1)")
        _require(self, "beta_2", lambda v: 0 <= v < 1, "in [0, 1)")
        _require(self, "epsilon", lambda v: v > 0, "> 0")
        _require(self, "warmup_fraction", lambda v: 0 <= v < 1, "in [0, 1)")
        _require(self, "warmup_learning_rate", lambda v: v >= 0, ">= 0")
        _require(self, "power", lambda v: v > 0, "> 0")
        in_range = "in [0, learning_rate]"
        _require(self, "end_learning_rate", lambda v: 0 <= v <= self.learning_rate, in_range)
        _require(self, "warmup_steps", lambda v: v >= 0, ">= 0", integer=True, optional=True)
        _require(self, "total_steps", lambda v: v > 0, "> 0", integer=True, optional=True)
        _require(self, "clip_norm", lambda v: v > 0, "> 0", optional=True)
        _require(self, "layer_decay", lambda v: 0 < v <= 1, "in (0, 1] (1 is off)")
        if (
            self.warmup_steps is not None
            and self.total_steps is not None
            and self.warmup_steps > self.total_steps
        ):
            raise ConfigError(
                f"{_WHERE}.warmup_steps: {self.warmup_steps} is more than "
                f"total_steps ({self.total_steps})"
            )
        self._validate_patterns()
        if not isinstance(self.exclude_norm_and_bias, bool):
            raise ConfigError(
                f"{_WHERE}.exclude_norm_and_bias: expected true or false, "
                f"got {self.exclude_norm_and_bias!r}"
            )
        if self.implementation not in ("foreach", "fused", "for_loop"):
            raise ConfigError(
                f"{_WHERE}.implementation: expected 'foreach', 'fused' or 'for_loop', "
                f"got {self.implementation!r}"
            )

    def _validate_patterns(self) -> None:
        patterns = self.exclude_from_weight_decay
        if isinstance(patterns, str) or not isinstance(patterns, (list, tuple)):
            raise ConfigError(
                f"{_WHERE}.exclude_from_weight_decay: expected a list of patterns, got {patterns!r}"
            )
        for index, pattern in enumerate(patterns):
            where = f"{_WHERE}.exclude_from_weight_decay[{index}]"
            if not isinstance(pattern, str):
                raise ConfigError(f"{where}: expected a string, got {pattern!r}")
            try:
                re.compile(pattern)
            except re.error as error:
                raise ConfigError(f"{where}: not a valid regular expression ({error})") from None
        # A tuple would survive JSON as a list and break equality after a round trip.
        self.exclude_from_weight_decay = list(patterns)

    def resolved_warmup_steps(self) -> int:
        """Warmup length in steps: ``warmup_steps`` if set, else ``int(fraction * total)``."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        return int(self.warmup_fraction * self._require_total_steps())

    def _require_total_steps(self) -> int:
        if self.total_steps is None:
            raise ConfigError(
                f"{_WHERE}.total_steps is not set; it is the decay horizon "
                "(epochs x steps per epoch), needed to build the schedule"
            )
        return self.total_steps

    def with_total_steps(self, total_steps: int) -> OptimizationConfig:
        """A copy with the decay horizon set (validated like every other setting)."""
        return dataclasses.replace(self, total_steps=total_steps)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; :meth:`from_dict` rebuilds an equal config from it."""
        return dataclass_to_dict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = _WHERE) -> OptimizationConfig:
        """Strictly rebuild a config: unknown keys and wrong types raise :class:`ConfigError`.

        ``where`` (a file name or the key holding this config) starts every error message.
        """
        try:
            return dataclass_from_dict(cls, data, where)
        except ConfigError as error:
            # Range checks run in __post_init__, which cannot know ``where``; name it here.
            message = str(error)
            if where == _WHERE or not message.startswith(f"{_WHERE}."):
                raise
            raise ConfigError(where + message[len(_WHERE) :]) from None

    def to_json(self, path: str | os.PathLike) -> None:
        """Write the config as JSON, atomically."""
        write_json(path, self.as_dict())

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> OptimizationConfig:
        """Read a config written by :meth:`to_json`; errors name the file."""
        return cls.from_dict(read_json(path), where=str(path))


def _require(
    config: OptimizationConfig,
    name: str,
    ok: Callable[[Any], bool],
    requirement: str,
    *,
    integer: bool = False,
    optional: bool = False,
) -> None:
    """Raise :class:`ConfigError` unless ``config.name`` is a number (or None) meeting ``ok``."""
    value = getattr(config, name)
    if value is None and optional:
        return
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{_WHERE}.{name}: expected {kind}, got {value!r}")
    if not math.isfinite(value) or not ok(value):
        raise ConfigError(f"{_WHERE}.{name}: must be {requirement}, got {value!r}")


# ---------------------------------------------------------------------------------------------
# Learning-rate schedules (pure Python)


@dataclass(frozen=True)
class PolynomialDecay:
    """Keras/Model Garden ``PolynomialDecay`` (without cycling), evaluable at any step.

    ``lr(s) = (initial - end) * (1 - min(s, decay_steps) / decay_steps) ** power + end``, so it
    stays at ``end_learning_rate`` after ``decay_steps``.
    """

    initial_learning_rate: float
    decay_steps: int
    end_learning_rate: float = 0.0
    power: float = 1.0

    def __post_init__(self) -> None:
        if self.decay_steps <= 0:
            raise ValueError(f"decay_steps must be positive, got {self.decay_steps}")

    def __call__(self, step: float) -> float:
        """Learning rate after ``step`` updates."""
        progress = min(_check_step(step), self.decay_steps) / self.decay_steps
        span = self.initial_learning_rate - self.end_learning_rate
        return span * (1.0 - progress) ** self.power + self.end_learning_rate


@dataclass(frozen=True)
class LinearWarmup:
    """Model Garden ``LinearWarmup`` around another schedule (or a constant learning rate).

    Before ``warmup_steps`` the rate rises linearly from ``warmup_learning_rate`` to
    ``after_warmup_lr_sched(warmup_steps)``; from then on it is ``after_warmup_lr_sched(step)``,
    evaluated at the global step. ``warmup_steps=0`` means no warmup.
    """

    after_warmup_lr_sched: Callable[[float], float] | float
    warmup_steps: int
    warmup_learning_rate: float = 0.0

    def __post_init__(self) -> None:
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")

    def _after_warmup(self, step: float) -> float:
        if callable(self.after_warmup_lr_sched):
            return float(self.after_warmup_lr_sched(step))
        return float(self.after_warmup_lr_sched)

    def __call__(self, step: float) -> float:
        """Learning rate after ``step`` updates."""
        step = _check_step(step)
        if step >= self.warmup_steps:
            return self._after_warmup(step)
        target = self._after_warmup(self.warmup_steps)
        start = self.warmup_learning_rate
        return start + step / self.warmup_steps * (target - start)


def _check_step(step: float) -> float:
    # Steps count updates already applied; a negative one is a caller's bug, not a config issue.
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return float(step)


def learning_rate_schedule(config: OptimizationConfig) -> LinearWarmup:
    """The warmup-then-decay schedule ``config`` describes: ``schedule(step) -> float``.

    Needs ``config.total_steps``; raises :class:`ConfigError` when it is not set.
    """
    # Re-check: fields may have been assigned since the config was built.
    config.validate()
    decay = PolynomialDecay(
        initial_learning_rate=config.learning_rate,
        decay_steps=config._require_total_steps(),
        end_learning_rate=config.end_learning_rate,
        power=config.power,
    )
    return LinearWarmup(
        after_warmup_lr_sched=decay,
        warmup_steps=config.resolved_warmup_steps(),
        warmup_learning_rate=config.warmup_learning_rate,
    )


# ---------------------------------------------------------------------------------------------
# The live optimizer (torch imported lazily)


def _is_norm_module(module: Any) -> bool:
    # Class names catch torch's norms and home-made ones (BertLayerNorm, T5LayerNorm, RMSNorm).
    return "norm" in type(module).__name__.lower()


def _excluded_from_decay(
    name: str, param: torch.Tensor, module: Any, config: OptimizationConfig
) -> bool:
    if any(re.search(pattern, name) for pattern in config.exclude_from_weight_decay):
        return True
    if not config.exclude_norm_and_bias:
        return False
    leaf = name.rsplit(".", 1)[-1]
    return leaf.endswith("bias") or (param.ndim <= 1 and _is_norm_module(module))


def _named_trainable_parameters(model: torch.nn.Module):
    """Yield ``(name, parameter, owning module)`` once per trainable parameter, in model order."""
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for leaf, param in module.named_parameters(recurse=False):
            # Tied weights appear under several names; the optimizer must see them once.
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            yield (f"{module_name}.{leaf}" if module_name else leaf), param, module


# Where a parameter sits in a BertClassifier (``encoder.layers.3.attention.qkv.weight``,
# ``encoder.embeddings.word_embeddings.weight``); the head and the pooler match neither.
_LAYER_NAME = re.compile(r"(?:^|\.)layers\.(\d+)\.")
_EMBEDDINGS_NAME = re.compile(r"(?:^|\.)embeddings\.")


def layer_depths(names: list[str]) -> dict[str, int]:
    """How many layers below the head each parameter sits: its learning rate's exponent of
    ``layer_decay``.

    With ``L`` encoder layers (parameters named ``...layers.N....``): the head, the pooler and
    anything else outside the stack are at depth 0, layer ``N`` at depth ``L - N`` (the top
    layer at 1), and the embeddings (``...embeddings....``) at depth ``L + 1``. This is BEiT's
    convention (and timm's and data2vec's): the rule "each layer learns at the rate of the
    layer above times the decay" holds all the way down, with the head as the layer above the
    top one and the embeddings as the layer below the lowest. (ELECTRA's code also skips one
    exponent between its head and top layer; Zhang et al. 2021 keep the top layer at the
    full rate. Both fit the same range of decays with a slightly different value.)
    """
    indices = {name: _LAYER_NAME.search(name) for name in names}
    found = [int(match.group(1)) for match in indices.values() if match]
    if not found:
        raise ConfigError(
            f"{_WHERE}.layer_decay: the model has no numbered encoder layers "
            "(parameters named ...layers.N...) to decay the learning rate over"
        )
    count = max(found) + 1
    depths = {}
    for name, match in indices.items():
        if match:
            depths[name] = count - int(match.group(1))
        elif _EMBEDDINGS_NAME.search(name):
            depths[name] = count + 1
        else:
            depths[name] = 0
    return depths


def parameter_groups(model: torch.nn.Module, config: OptimizationConfig) -> list[dict[str, Any]]:
    """Split ``model``'s trainable parameters into a weight-decay group and a no-decay group.

    Each group is a torch param-group dict: ``params``, ``weight_decay`` and ``param_names``
    (dotted names, for inspection and for torch's named optimizer state). Frozen parameters are
    left out; an empty group is dropped.

    With ``config.layer_decay`` below 1 the split is per depth (see :func:`layer_depths`):
    a weight-decay and a no-decay group for each depth, head first, each with ``lr`` its
    scale ``layer_decay ** depth``, which :func:`build_optimizer`'s scheduler multiplies by
    the schedule. So the first group always learns at the schedule's own rate.
    """
    members = [
        (name, param, _excluded_from_decay(name, param, module, config))
        for name, param, module in _named_trainable_parameters(model)
    ]
    if not members:
        raise ConfigError("the model has no trainable parameters to optimize")
    if config.layer_decay == 1.0:
        # Exactly the groups bertfit always built: checkpoints of earlier runs still load.
        depths = dict.fromkeys((name for name, _, _ in members), 0)
    else:
        depths = layer_depths([name for name, _, _ in members])
    groups = []
    for depth in sorted(set(depths.values())):
        for excluded, rate in ((False, config.weight_decay), (True, 0.0)):
            chosen = [(n, p) for n, p, ex in members if depths[n] == depth and ex == excluded]
            if not chosen:
                continue
            group = {
                "params": [param for _, param in chosen],
                "weight_decay": rate,
                "param_names": [name for name, _ in chosen],
            }
            if config.layer_decay != 1.0:
                group["lr"] = config.layer_decay**depth
            groups.append(group)
    return groups


def _implementation_kwargs(config: OptimizationConfig) -> dict[str, bool]:
    if config.implementation == "fused":
        return {"fused": True}
    return {"foreach": config.implementation == "foreach"}


def build_optimizer(
    model: torch.nn.Module, config: OptimizationConfig
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over :func:`parameter_groups` plus a LambdaLR driving it with the config's schedule.

    Call ``optimizer.step()`` then ``scheduler.step()`` once per update; after ``k`` updates
    every group's learning rate, and ``scheduler.get_last_lr()``, equal
    ``learning_rate_schedule(config)(k)`` exactly, times the group's layer-decay scale
    (``layer_decay ** depth``; 1 for every group when ``layer_decay`` is 1, and for the
    first group always). Needs ``config.total_steps``.
    """
    import torch  # here, not at the top: run configs read OptimizationConfig without torch

    schedule = learning_rate_schedule(config)
    # The scheduler owns the learning rate: LambdaLR multiplies each group's base rate by the
    # lambda, so a base of 1.0 makes the group rate schedule(step) bit for bit (a base of the
    # peak times schedule/peak can be off by one ulp). LambdaLR sets schedule(0) at once.
    # Under layer decay a group's base is its scale (its own "lr"), so every group follows
    # the same warmup and decay, in proportion.
    optimizer = torch.optim.AdamW(
        parameter_groups(model, config),
        lr=1.0,
        betas=(config.beta_1, config.beta_2),
        eps=config.epsilon,
        weight_decay=config.weight_decay,
        **_implementation_kwargs(config),
    )

    # A plain function, not the schedule object: LambdaLR.state_dict() would otherwise store the
    # object's attributes, which torch.load(weights_only=True) cannot read back.
    def lr_at(step: int) -> float:
        return schedule(step)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=lr_at)
    return optimizer, scheduler


def clip_gradients(optimizer: torch.optim.Optimizer, config: OptimizationConfig) -> float | None:
    """Clip the global gradient norm of the optimizer's parameters to ``config.clip_norm``.

    Call between ``backward()`` and ``optimizer.step()``. Returns the norm before clipping, or
    ``None`` when clipping is off.
    """
    if config.clip_norm is None:
        return None
    import torch  # see build_optimizer

    params = [p for group in optimizer.param_groups for p in group["params"]]
    total = torch.nn.utils.clip_grad_norm_(params, config.clip_norm, foreach=True)
    return float(total)
