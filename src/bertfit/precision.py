"""Where training runs and in which number format: ``--device`` and ``--precision``.

``precision`` is what the user asks for; :func:`resolve_precision` turns it into what runs:

* ``fp32``: plain float32 everywhere.
* ``bf16``: bfloat16 autocast around the forward pass and the loss, float32 master weights and
  optimizer state (autocast casts each weight once per forward and caches it). Only where the
  device computes bf16 natively: a CPU with AVX-512 BF16 or AMX, or a CUDA GPU that supports it.
  Elsewhere bf16 is emulated and slower than fp32, so asking for it is refused with a reason.
* ``fp16``: float16 autocast with a gradient scaler, CUDA only.
* ``auto`` (the default): ``bf16`` where the device does it natively, ``fp32`` elsewhere.

The run's ``config.json`` records the resolved device and precision.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from bertfit.errors import ConfigError

if TYPE_CHECKING:  # torch is imported where it is used: run configs are read without it
    import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")


def resolve_device(requested: str) -> torch.device:
    """The device to train on: ``auto`` takes CUDA when one is visible, else the CPU."""
    import torch  # here, not at the top: run configs import this module without torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"trainer.device: expected one of {', '.join(DEVICES)}, got {requested}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device is cuda, but PyTorch sees no CUDA device here")
    return device


def native_bf16(device: torch.device) -> bool:
    """True when ``device`` computes bfloat16 matrix products in hardware."""
    import torch  # see resolve_device

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def resolve_precision(requested: str, device: torch.device) -> str:
    """What runs for the ``requested`` precision on ``device`` (see the module docstring)."""
    if requested not in PRECISIONS:
        raise ConfigError(
            f"trainer.precision: expected one of {', '.join(PRECISIONS)}, got {requested}"
        )
    if requested == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if requested == "bf16" and not native_bf16(device):
        what = (
            "this CPU has neither AVX-512 BF16 nor AMX"
            if device.type == "cpu"
            else ("this GPU does not support bf16")
        )
        raise ConfigError(
            f"--precision bf16: {what}, so bf16 would be emulated and slower than fp32; "
            "use --precision fp32 (or auto)"
        )
    if requested == "fp16" and device.type != "cuda":
        raise ConfigError("--precision fp16 needs a CUDA device; on a CPU use fp32 or bf16")
    return requested


@contextlib.contextmanager
def autocast(precision: str, device: torch.device) -> Iterator[None]:
    """The autocast region for the forward pass and loss at a resolved ``precision``."""
    if precision == "fp32":
        yield
        return
    import torch  # see resolve_device

    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    with torch.autocast(device.type, dtype=dtype):
        yield


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A gradient scaler for fp16 (its small range underflows gradients); None otherwise."""
    if precision != "fp16":
        return None
    import torch  # see resolve_device

    return torch.amp.GradScaler(device.type)
