"""Downloading pretrained encoders into the user cache, verified, complete or not at all.

A preset's archive is fetched into a staging directory beside its cache directory, then

* its length is checked against the server's ``Content-Length`` (a cut transfer fails) and
  against the preset's published size, when there is one;
* its SHA-256 is checked against the preset's published digest, when there is one; Google's
  BERT archives have none published, so for them the MD5 and CRC-32C that Google Cloud Storage
  sends for every object (``x-goog-hash``) are checked instead, and the SHA-256 of what
  arrived is recorded in the cache (``bertfit-download.json``) for anyone who wants to pin it;
* its zip members are extracted (each one's CRC-32 checked by :mod:`zipfile`) and every
  tensor of the checkpoint is read once, checking each stored CRC-32C;

and only then renamed into the cache. Any failure, an interrupt included, removes the staging
directory, so the cache never holds a partial model. Whether to download at all is decided by
:mod:`bertfit.model.presets` (``BERTFIT_OFFLINE``).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.client
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import google_crc32c

from bertfit.config import make_staging_dir, write_json
from bertfit.errors import CheckpointError
from bertfit.progress import bar as progress_bar

MARKER_FILE = "bertfit-download.json"
_CHUNK = 1 << 20
_TIMEOUT_S = 30
# The files of a TensorFlow BERT checkpoint worth keeping (the .meta graph is not needed).
_KEEP_SUFFIXES = (".json", ".txt", ".index")


@dataclass(frozen=True)
class Download:
    """What one verified download received: its size and SHA-256, and what was checked."""

    size: int
    sha256: str
    checks: tuple[str, ...]


def fetch(
    url: str,
    destination: Path,
    *,
    size: int | None = None,
    sha256: str | None = None,
    progress: bool | None = None,
    label: str | None = None,
) -> Download:
    """Download ``url`` to ``destination``, checking its length and checksums as it arrives.

    Raises :class:`CheckpointError` (and removes ``destination``) on a network error, a
    transfer shorter or longer than announced, or a checksum that does not match.
    """
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            announced = response.headers.get("Content-Length")
            server_hashes = _goog_hashes(response.headers.get_all("x-goog-hash") or [])
            digests = {"sha256": hashlib.sha256(), "md5": hashlib.md5(usedforsecurity=False)}
            received = _copy(response, destination, digests, announced, progress, label or url)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        destination.unlink(missing_ok=True)
        reason = getattr(error, "reason", None) or error
        if isinstance(error, urllib.error.HTTPError):
            reason = f"HTTP {error.code} {error.reason}"
        raise CheckpointError(f"could not download {url} ({reason})") from None
    except BaseException:
        destination.unlink(missing_ok=True)
        raise
    try:
        checks = _verify(
            url, destination, received, announced, size, sha256, digests, server_hashes
        )
    except CheckpointError:
        destination.unlink(missing_ok=True)
        raise
    return Download(received, digests["sha256"].hexdigest(), checks)


def _copy(response, destination: Path, digests, announced, progress, label) -> int:
    total = int(announced) if announced and announced.isdigit() else None
    received = 0
    # bertfit's one progress policy: on a terminal, off under --quiet or when piped.
    with (
        open(destination, "wb") as out,
        progress_bar(
            desc=label,
            total=total,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            show=progress,
            delay=0,
        ) as bar,
    ):
        while chunk := response.read(_CHUNK):
            out.write(chunk)
            for digest in digests.values():
                digest.update(chunk)
            received += len(chunk)
            bar.update(len(chunk))
    return received


def _verify(url, path, received, announced, size, sha256, digests, server_hashes) -> tuple:
    checks = []
    if announced is not None:
        if not announced.isdigit() or int(announced) != received:
            raise CheckpointError(
                f"{url}: the transfer was cut short ({received} of {announced} bytes); try again"
            )
        checks.append("length")
    if size is not None and received != size:
        raise CheckpointError(f"{url}: got {received} bytes, but this file has {size}")
    if sha256 is not None:
        if digests["sha256"].hexdigest() != sha256.lower():
            raise CheckpointError(
                f"{url}: SHA-256 mismatch (got {digests['sha256'].hexdigest()}, "
                f"expected {sha256}); the download is corrupt or the file has changed"
            )
        checks.append("sha256")
    if "md5" in server_hashes:
        if digests["md5"].digest() != server_hashes["md5"]:
            raise CheckpointError(f"{url}: MD5 mismatch with the server's x-goog-hash")
        checks.append("md5")
    if "crc32c" in server_hashes:
        crc = google_crc32c.Checksum()
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                crc.update(chunk)
        if crc.digest() != server_hashes["crc32c"]:
            raise CheckpointError(f"{url}: CRC-32C mismatch with the server's x-goog-hash")
        checks.append("crc32c")
    return tuple(checks)


def _goog_hashes(headers: list[str]) -> dict[str, bytes]:
    """``x-goog-hash: crc32c=<b64>,md5=<b64>`` (possibly several headers) as raw digests."""
    hashes = {}
    for header in headers:
        for part in header.split(","):
            name, _, value = part.strip().partition("=")
            try:
                hashes[name.lower()] = base64.b64decode(value, validate=True)
            except ValueError:
                continue  # an encoding we do not know is no evidence either way
    return hashes


def install_archive(
    url: str,
    target: Path,
    *,
    size: int | None = None,
    sha256: str | None = None,
    progress: bool | None = None,
    label: str | None = None,
    check: Callable[[Path], None] | None = None,
) -> Path:
    """Download the zip at ``url`` and install the model directory inside it as ``target``.

    ``check`` is run on the extracted directory before it is renamed into place (bertfit
    reads every tensor of the checkpoint there). Returns ``target``.
    """
    staging = make_staging_dir(target)
    try:
        archive = staging / "download.zip"
        download = fetch(url, archive, size=size, sha256=sha256, progress=progress, label=label)
        model = _extract(archive, staging / "model", url)
        archive.unlink()
        if check is not None:
            check(model)
        write_json(
            model / MARKER_FILE,
            {
                "url": url,
                "bytes": download.size,
                "sha256": download.sha256,
                "verified": [*download.checks, "zip-crc32", *(["tensor-crc32c"] if check else [])],
                "downloaded": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            },
        )
        if target.exists():
            shutil.rmtree(target)  # an incomplete copy put there by hand
        os.replace(model, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _extract(archive: Path, destination: Path, url: str) -> Path:
    """Extract the checkpoint's files (config, vocabulary, index, data shards), flat."""
    destination.mkdir()
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = [m for m in zipped.infolist() if not m.is_dir()]
            wanted = [m for m in members if _wanted(m.filename)]
            folders = {Path(m.filename).parent for m in wanted}
            if not wanted or len(folders) > 1:
                raise CheckpointError(f"{url}: not a single BERT checkpoint folder")
            for member in wanted:
                # Only the base name is used, so no member can write outside the directory.
                with (
                    zipped.open(member) as source,
                    open(destination / Path(member.filename).name, "wb") as out,
                ):
                    shutil.copyfileobj(source, out, _CHUNK)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as error:
        raise CheckpointError(f"{url}: not a valid zip archive ({error})") from None
    return destination


def _wanted(member: str) -> bool:
    # macOS archivers add __MACOSX/ and ._NAME resource forks beside the real files.
    name = Path(member).name
    if member.startswith("__MACOSX/") or name.startswith("._"):
        return False
    return name.endswith(_KEEP_SUFFIXES) or ".data-" in name


def download_hf_model(repo_id: str, offline: bool) -> Path:
    """The local snapshot of Hugging Face model ``repo_id``: from the Hugging Face cache,
    downloaded into it when online (only the files bertfit reads)."""
    # here, not above: its downloader takes a fifth of a second to import, and only ids need it
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import HfHubHTTPError, LocalEntryNotFoundError

    patterns = [
        "config.json",
        "model.safetensors",
        "pytorch_model.bin",
        "vocab.txt",
        "tokenizer_config.json",
        "tokenizer.json",
    ]
    try:
        path = snapshot_download(repo_id, allow_patterns=patterns, local_files_only=offline)
    except LocalEntryNotFoundError:
        raise CheckpointError(
            f"{repo_id}: not in the Hugging Face cache, and bertfit is offline "
            "(BERTFIT_OFFLINE or HF_HUB_OFFLINE is set); download it when online, or pass "
            "--model DIR pointing at a copy (config.json, model.safetensors, vocab.txt)"
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as error:
        raise CheckpointError(f"{repo_id}: cannot get it from Hugging Face ({error})") from None
    path = Path(path)
    if not any((path / name).is_file() for name in ("model.safetensors", "pytorch_model.bin")):
        raise CheckpointError(f"{repo_id}: the Hugging Face repository has no PyTorch weights")
    return path
