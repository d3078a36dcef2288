"""Run a ``torch-export`` directory (``model.pt2``, a ``torch.export`` program) in PyTorch.

For users who stay in PyTorch: the program runs without bertfit's model code, with the same
predictor interface as the ONNX export. ``torch.export.load`` can fall back to unpickling for
tensor subclasses, custom objects and sample inputs; bertfit writes none of those, and this
module refuses an archive that holds any before loading it, so no pickle is ever read.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from bertfit.errors import CheckpointError
from bertfit.export.spec import MODEL_INPUTS


def check_archive(path: Path) -> None:
    """Refuse a ``.pt2`` archive that would make ``torch.export.load`` unpickle anything."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise CheckpointError(f"{path}: not a torch.export archive ({error})") from None
    with archive:
        configs = 0
        for info in archive.infolist():
            name = info.filename
            if "/sample_inputs/" in name and info.file_size:
                raise CheckpointError(f"{path}: holds pickled sample inputs ({name}); refused")
            if "/constants/" in name and not name.endswith(".json"):
                raise CheckpointError(f"{path}: holds pickled constants ({name}); refused")
            if name.endswith("_config.json") and "/data/" in name:
                configs += 1
                _check_payload_config(path, name, archive.read(name))
        if configs == 0:
            raise CheckpointError(f"{path}: no weights configuration; not a torch.export archive")


def _check_payload_config(path: Path, name: str, data: bytes) -> None:
    try:
        entries = json.loads(data)["config"]
    except (ValueError, KeyError, TypeError):
        raise CheckpointError(f"{path}: {name} is not a valid payload configuration") from None
    for key, meta in entries.items():
        if not isinstance(meta, dict) or meta.get("use_pickle") is not False:
            raise CheckpointError(f"{path}: {name}: {key} is stored as a pickle; refused")


class TorchExportBackend:
    """The program of a ``model.pt2`` archive, run under ``torch.inference_mode``."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import torch  # an ONNX server never loads this backend, and runs without torch

        check_archive(path)
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            program = torch.export.load(str(path))
        except Exception as error:  # torch raises many types for unreadable archives
            raise CheckpointError(f"{path}: torch.export cannot load it ({error})") from None
        self._torch = torch
        self.module = program.module()

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """Logits [batch, classes] of one padded batch."""
        torch = self._torch
        with torch.inference_mode():
            inputs = [torch.from_numpy(np.ascontiguousarray(feed[name])) for name in MODEL_INPUTS]
            return self.module(*inputs).float().numpy()
