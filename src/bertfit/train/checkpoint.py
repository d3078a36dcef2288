"""Training checkpoints: everything a run needs to continue bit for bit after a crash.

A checkpoint is a directory ``RUN/checkpoints/step-N/`` holding

* ``model.safetensors``: the model's weights (the unwrapped module's ``state_dict``);
* ``optimizer.pt``: the optimizer's and the schedule's ``state_dict`` (plain tensors, numbers
  and lists, written by ``torch.save`` and read back with ``weights_only=True``);
* ``rng.pt``: every random generator of every process (torch CPU and CUDA, NumPy's global
  one, Python's ``random``), as tensors and tuples of ints;
* ``trainer.json``: the loop's position (step, epoch, batches done in the epoch, a fingerprint
  of the epoch's batch order), the metric history, the best record and the partial averages;
* ``manifest.json``, written last: the size and sha256 of every other file.

It is written into a hidden staging directory beside its final name, every file and the
directory are fsynced, and only then is it renamed into place, so ``step-N/`` is complete or
absent. Only then are the oldest checkpoints beyond the last ``keep`` removed: a failed write
(a full disk) leaves the previous checkpoints as they were. On resume the newest checkpoint
whose files match their manifest is used; a truncated or corrupted one is skipped with a
warning.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from bertfit.config import make_staging_dir
from bertfit.errors import CheckpointError
from bertfit.paths import sha256_file

CHECKPOINTS_DIR = "checkpoints"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
RNG_FILE = "rng.pt"
STATE_FILE = "trainer.json"
MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1

_STEP_DIR = re.compile(r"^step-(\d+)$")


@dataclass
class Checkpoint:
    """A checkpoint read back from disk (see the module docstring for what each part holds)."""

    path: Path
    step: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng: list[dict[str, Any]]
    state: dict[str, Any]


# -- random generators ------------------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """This process's random generators as tensors and plain containers (``weights_only``-safe)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Put back the generators saved by :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    saved = state["numpy"]
    keys = saved["keys"].numpy().astype(np.uint32)
    np.random.set_state(
        (saved["kind"], keys, saved["position"], saved["has_gauss"], saved["cached_gaussian"])
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- finding checkpoints ----------------------------------------------------------------------


def checkpoints_dir(run_dir: str | os.PathLike) -> Path:
    """Where a run keeps its checkpoints: ``RUN/checkpoints``."""
    return Path(run_dir) / CHECKPOINTS_DIR


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """The ``step-N`` directories in ``directory``, oldest first (hidden staging ones excluded)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if p.is_dir() and _STEP_DIR.match(p.name)]
    return sorted(found, key=step_of)


def step_of(path: Path) -> int:
    """N of a ``step-N`` directory."""
    match = _STEP_DIR.match(Path(path).name)
    if match is None:
        raise CheckpointError(f"{path}: not a checkpoint directory (step-N)")
    return int(match.group(1))


def verify_checkpoint(path: str | os.PathLike) -> None:
    """Raise :class:`CheckpointError` unless every file matches ``manifest.json``."""
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError):
        raise CheckpointError(f"{path}: no readable {MANIFEST_FILE}; incomplete") from None
    for name, expected in files.items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"{path}: {name} is missing")
        if file.stat().st_size != expected["bytes"]:
            raise CheckpointError(f"{path}: {name} has the wrong size (truncated?)")
        if sha256_file(file) != expected["sha256"]:
            raise CheckpointError(f"{path}: {name} does not match its checksum (corrupted)")


def latest_checkpoint(
    directory: str | os.PathLike, warn: Callable[[str], None] | None = None
) -> Path | None:
    """The newest checkpoint in ``directory`` that passes :func:`verify_checkpoint`.

    Each damaged newer one is reported through ``warn`` (stderr by default) and skipped.
    """
    warn = warn or (lambda message: print(f"warning: {message}", file=sys.stderr))
    for path in reversed(list_checkpoints(directory)):
        try:
            verify_checkpoint(path)
        except CheckpointError as error:
            warn(f"{error}; using the one before")
            continue
        return path
    return None


# -- writing ----------------------------------------------------------------------------------


def save_checkpoint(
    directory: str | os.PathLike,
    step: int,
    *,
    model_state: Mapping[str, torch.Tensor],
    optimizer_state: Mapping[str, Any],
    rng_states: list[dict[str, Any]],
    trainer_state: Mapping[str, Any],
    keep: int,
) -> Path:
    """Write ``directory/step-<step>`` atomically, then keep only the newest ``keep``.

    Raises :class:`CheckpointError` when the write fails (a full disk): nothing of the new
    checkpoint stays behind and the previous ones are untouched.
    """
    directory = Path(directory)
    target = directory / f"step-{step}"
    _remove_stale_staging(directory)
    staging = make_staging_dir(target)
    try:
        tensors = {name: t.detach().cpu().contiguous() for name, t in model_state.items()}
        save_file(tensors, staging / MODEL_FILE, metadata={"format": "pt"})
        torch.save(dict(optimizer_state), staging / OPTIMIZER_FILE)
        torch.save({"ranks": rng_states}, staging / RNG_FILE)
        state = {"format": FORMAT_VERSION, "step": step, **trainer_state}
        (staging / STATE_FILE).write_text(json.dumps(state) + "\n", encoding="utf-8")
        names = (MODEL_FILE, OPTIMIZER_FILE, RNG_FILE, STATE_FILE)
        files = {name: _describe(staging / name) for name in names}
        manifest = {"format": FORMAT_VERSION, "step": step, "files": files}
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        for name in (*names, MANIFEST_FILE):
            _fsync(staging / name)
        _fsync(staging)
        if target.exists():  # a checkpoint of this step from before a crash: replace it
            shutil.rmtree(target)
        os.replace(staging, target)
        _fsync(directory)
    # A full disk surfaces as OSError, or wrapped by torch.save (RuntimeError) or safetensors.
    except (OSError, RuntimeError, SafetensorError) as error:
        shutil.rmtree(staging, ignore_errors=True)
        previous = list_checkpoints(directory)
        kept = f"; {previous[-1]} is intact" if previous else ""
        raise CheckpointError(f"could not write checkpoint {target}: {error}{kept}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for old in list_checkpoints(directory)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _remove_stale_staging(directory: Path) -> None:
    """Drop hidden half-written checkpoints left by a process that was killed while saving."""
    if directory.is_dir():
        for path in directory.glob(".step-*"):
            shutil.rmtree(path, ignore_errors=True)


def _describe(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _fsync(path: Path) -> None:
    """Flush a file's (or a directory's entries') data to the disk."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- reading ----------------------------------------------------------------------------------


def load_checkpoint(path: str | os.PathLike, verify: bool = True) -> Checkpoint:
    """Read a checkpoint directory; tensors come back on the CPU.

    Only tensors and plain containers are read (``weights_only=True``): a checkpoint cannot
    run code.
    """
    path = Path(path)
    if verify:
        verify_checkpoint(path)
    try:
        model = load_file(path / MODEL_FILE, device="cpu")
        optimizer = torch.load(path / OPTIMIZER_FILE, map_location="cpu", weights_only=True)
        rng = torch.load(path / RNG_FILE, map_location="cpu", weights_only=True)["ranks"]
        state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as error:
        raise CheckpointError(f"{path}: unreadable checkpoint ({error})") from None
    if state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {state.get('format')} is not known")
    return Checkpoint(path, int(state["step"]), model, optimizer, rng, state)
