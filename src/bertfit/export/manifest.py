"""The exported artifact's file layout, its manifest, and the checks made when it is loaded.

An exported directory holds:

================  ===============================================================================
``model.onnx``    the classifier as ONNX (``format: onnx``), or ``model.pt2`` (``torch-export``)
``vocab.txt``     the WordPiece vocabulary, an exact copy of the model's
``classifier.json``  task, text columns, label names, tokenizer and packing settings, model I/O
``README.md``     the model card (Hugging Face's format) of the saved model, and what the export is
``manifest.json`` format and versions, how it was exported, the export check, and the sha256
                  and size of every other file
================  ===============================================================================

The model card is checked like every other file: it states the model's results and its
temperature, and a manifest that vouches for a directory vouches for all of it. It is not
required, so exports written before cards load as they did.

This module needs only the standard library: it is imported by the torch-free runtime.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bertfit.errors import CheckpointError
from bertfit.paths import sha256_file
from bertfit.text.tokenizer import VOCAB_FILE_NAME

FORMAT_NAME = "bertfit-export"
FORMAT_VERSION = 1

MANIFEST_FILE = "manifest.json"
CLASSIFIER_FILE = "classifier.json"

#: Model file of each export format.
MODEL_FILES = {"onnx": "model.onnx", "torch-export": "model.pt2"}


def describe_files(directory: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """``{name: {"sha256": ..., "bytes": ...}}`` for each file of ``directory``."""
    return {
        name: {"sha256": sha256_file(directory / name), "bytes": (directory / name).stat().st_size}
        for name in sorted(names)
    }


def required_files(export_format: str) -> list[str]:
    """The files (besides the manifest) that a directory of ``export_format`` must hold."""
    return [MODEL_FILES[export_format], VOCAB_FILE_NAME, CLASSIFIER_FILE]


def read_manifest(directory: Path) -> dict[str, Any]:
    """Parse ``manifest.json`` and check that it describes a format this bertfit can load."""
    path = directory / MANIFEST_FILE
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: exported model directory not found")
    if not path.is_file():
        raise CheckpointError(
            f"{path}: missing; {directory} is not a complete bertfit export "
            "(write one with `bertfit export RUN --output DIR`)"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: not a bertfit export manifest (format != {FORMAT_NAME!r})")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format_version {version!r} is not supported by this bertfit "
            f"(it reads version {FORMAT_VERSION}); re-export the model or upgrade bertfit"
        )
    export_format = (manifest.get("export") or {}).get("format")
    if export_format not in MODEL_FILES:
        raise CheckpointError(
            f"{path}: export.format {export_format!r} is not one of {sorted(MODEL_FILES)}"
        )
    if not isinstance(manifest.get("files"), dict):
        raise CheckpointError(f"{path}: no 'files' table of checksums")
    return manifest


def verify_directory(directory: str | Path) -> dict[str, Any]:
    """Read the manifest and check every file it lists against its size and sha256.

    Raises :class:`CheckpointError` naming the file when the manifest is missing or invalid, a
    required file is missing or unlisted, or a file's checksum does not match (the directory
    was changed or copied incompletely). Returns the manifest.
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    files = manifest["files"]
    for name in required_files(manifest["export"]["format"]):
        if name not in files:
            raise CheckpointError(f"{directory / MANIFEST_FILE}: does not list {name}")
    for name, entry in files.items():
        _verify_file(directory, name, entry)
    return manifest


def _verify_file(directory: Path, name: str, entry: Any) -> None:
    path = directory / name
    if Path(name).name != name or name in ("", ".", ".."):
        # Only plain names: a manifest must not point outside its directory.
        raise CheckpointError(f"{directory / MANIFEST_FILE}: file name {name!r} is not plain")
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
        raise CheckpointError(f"{directory / MANIFEST_FILE}: files.{name} has no sha256")
    if not path.is_file():
        raise CheckpointError(
            f"{path}: missing (listed in {MANIFEST_FILE}); the export is incomplete"
        )
    size = path.stat().st_size
    if entry.get("bytes") not in (None, size):
        raise CheckpointError(
            f"{path}: {size} bytes, the manifest says {entry['bytes']}; the file was changed "
            "or copied incompletely"
        )
    if sha256_file(path) != entry["sha256"]:
        raise CheckpointError(
            f"{path}: sha256 does not match {MANIFEST_FILE}; the file was changed after export"
        )
