"""Committed parts of a bulk prediction, so that a stopped run continues where it was.

Beside the output ``OUT`` sits the folder ``OUT.parts/``: one part file per chunk of input and a
``manifest.json`` that lists the parts committed so far with the job that wrote them (the input
files' sizes and modification times, a sha256 of the model's files, and the options that decide
the rows). A part counts only once the manifest, rewritten atomically after the part's file is
in place, lists it; a run killed at any moment therefore leaves parts that are whole and listed,
or an unlisted file that the next run writes again.

When every chunk is in, the parts are joined into ``OUT`` under a temporary name and renamed
(:func:`bertfit.bulk.sinks.assemble`); only then does the manifest say ``complete``, and the
part files are removed. ``OUT`` thus never exists half-written, and a reader that finds it can
trust it is whole. (A Parquet folder of parts with a ``_SUCCESS`` marker was the other choice:
Spark, pandas and pyarrow read such a folder whether or not the marker is there, so a partial
output would look complete to them.) The manifest stays, so that the same command again can
say the output is complete, and a changed input or model is noticed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from bertfit.bulk.sinks import PART_SUFFIX, assemble, write_jsonl_lines, write_part
from bertfit.config import read_json, write_json
from bertfit.errors import ConfigError, DataError

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "bertfit-bulk-predict"
MANIFEST_VERSION = 1


def parts_dir(output: Path) -> Path:
    """``OUT.parts/``: where the parts of ``output`` are kept until it is complete."""
    return output.with_name(output.name + ".parts")


def rejects_path(output: Path) -> Path:
    """``OUT_STEM.rejects.jsonl`` beside the output: the rows ``--on-error skip`` set aside."""
    return output.with_name(output.stem + ".rejects.jsonl")


def input_fingerprint(files: Sequence[Path]) -> list[dict[str, Any]]:
    """Each input file's absolute path, size and modification time (nanoseconds).

    Size and time, as make and rsync use, rather than a hash: hashing would read a corpus of
    many gigabytes once more on every start.
    """
    entries = []
    for path in files:
        status = path.stat()
        entries.append(
            {"path": str(path.resolve()), "size": status.st_size, "mtime_ns": status.st_mtime_ns}
        )
    return entries


class PartStore:
    """The parts folder of one output: what is committed, and the job that committed it."""

    def __init__(self, output: Path, job: dict[str, Any]) -> None:
        self.output = output
        self.folder = parts_dir(output)
        self.manifest_path = self.folder / MANIFEST_FILE
        self.job = job
        self.parts: list[dict[str, Any]] = []
        self.complete = False
        self.summary: dict[str, Any] = {}

    @classmethod
    def open(cls, output: Path, job: dict[str, Any], overwrite: bool = False) -> PartStore:
        """The store of ``output`` for ``job``: new, or the committed parts of the same job.

        Raises:
            DataError: the parts were written from other input files, or with another model.
            ConfigError: with other options; or ``output`` exists and was not written here.
        """
        store = cls(output, job)
        if overwrite:
            store.clear()
        if store.manifest_path.is_file():
            store._resume()
        elif output.exists():
            raise ConfigError(
                f"{output} already exists and is not the output of an earlier bulk predict "
                f"(no {store.manifest_path}); choose another --output, or --overwrite to replace it"
            )
        else:
            store.folder.mkdir(parents=True, exist_ok=True)
            store._write_manifest()
        return store

    def clear(self) -> None:
        """Remove the output, its rejects and its parts (``--overwrite``)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        for path in (self.output, rejects_path(self.output)):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)

    def _resume(self) -> None:
        manifest = read_json(self.manifest_path)
        if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
            raise ConfigError(f"{self.manifest_path}: not a bulk predict manifest")
        self._check_same_job(manifest.get("job", {}))
        self.parts = list(manifest.get("parts", []))
        self.complete = bool(manifest.get("complete"))
        self.summary = dict(manifest.get("summary", {}))
        if self.complete:
            self._check_output_unchanged(manifest.get("output", {}))
            self._remove_part_files()  # left behind if the last run stopped right after
            return
        for part in self.parts:
            if not (self.folder / part["file"]).is_file():
                raise DataError(
                    f"{self.folder / part['file']}: a committed part is missing; "
                    "rerun with --overwrite to start over"
                )

    def _check_same_job(self, before: dict[str, Any]) -> None:
        again = "; rerun with --overwrite to start over"
        if before.get("inputs") != self.job["inputs"]:
            raise DataError(
                f"the input changed since {self.folder} was written "
                f"({_first_change(before.get('inputs', []), self.job['inputs'])}){again}"
            )
        # The model by its files' hash: the same model given by another path is the same.
        if before.get("model", {}).get("sha256") != self.job["model"]["sha256"]:
            raise DataError(
                f"the model {self.job['model']['source']} is not the one that wrote "
                f"{self.folder} (its files differ){again}"
            )
        old, new = before.get("options", {}), self.job["options"]
        if old != new:
            keys = sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))
            changed = [f"{key}: {old.get(key)!r} then {new.get(key)!r}" for key in keys]
            raise ConfigError(
                f"the options differ from the run that wrote {self.folder} "
                f"({'; '.join(changed)}); give the same ones, or --overwrite to start over"
            )

    def _check_output_unchanged(self, recorded: dict[str, Any]) -> None:
        try:
            status = self.output.stat()
        except FileNotFoundError:
            status = None
        if status is None or [status.st_size, status.st_mtime_ns] != [
            recorded.get("size"),
            recorded.get("mtime_ns"),
        ]:
            state = "is gone" if status is None else "has changed"
            raise DataError(
                f"{self.output} was completed by this command but {state} since; "
                "rerun with --overwrite to write it again"
            )

    @property
    def committed_rows(self) -> int:
        """Input rows covered by the committed parts."""
        return sum(part["input_rows"] for part in self.parts)

    def commit(
        self, table: pa.Table, rejects: list[dict[str, Any]], input_rows: int, kind: str
    ) -> None:
        """Write the next part (its rows, and its rejected rows if any) and list it."""
        index = len(self.parts)
        name = f"part-{index:06d}{PART_SUFFIX[kind]}"
        write_part(table, self.folder / name, kind)
        part = {"file": name, "input_rows": input_rows, "rows": table.num_rows}
        if rejects:
            part["rejects"] = f"rejects-{index:06d}.jsonl"
            write_jsonl_lines(rejects, self.folder / part["rejects"])
        part["columns"] = list(table.column_names)
        self.parts.append(part)
        self._write_manifest()

    def finish(self, kind: str, header: Sequence[str]) -> dict[str, Any]:
        """Join the parts into the output and the rejects file, mark the job complete, remove
        the part files; returns the summary (rows, rejected)."""
        assemble([self.folder / part["file"] for part in self.parts], self.output, kind, header)
        rejected = [self.folder / part["rejects"] for part in self.parts if "rejects" in part]
        target = rejects_path(self.output)
        if rejected:
            assemble(rejected, target, "jsonl", ())
        else:
            target.unlink(missing_ok=True)
        self.summary = {
            "rows": sum(part["rows"] for part in self.parts),
            "rejected": sum(part["input_rows"] - part["rows"] for part in self.parts),
        }
        status = self.output.stat()
        self.complete = True
        self._write_manifest({"size": status.st_size, "mtime_ns": status.st_mtime_ns})
        self._remove_part_files()
        return self.summary

    def _remove_part_files(self) -> None:
        for path in self.folder.iterdir():
            if path.name != MANIFEST_FILE:
                path.unlink(missing_ok=True)

    def _write_manifest(self, output: dict[str, Any] | None = None) -> None:
        manifest = {
            "format": MANIFEST_FORMAT,
            "format_version": MANIFEST_VERSION,
            "job": self.job,
            "parts": self.parts,
            "complete": self.complete,
        }
        if output is not None:
            manifest["output"] = output
            manifest["summary"] = self.summary
        write_json(self.manifest_path, manifest)
        _sync_directory(self.folder)


def _first_change(before: list[dict], now: list[dict]) -> str:
    old = {entry["path"]: entry for entry in before}
    new = {entry["path"]: entry for entry in now}
    for path in new:
        if path not in old:
            return f"{path} is new"
    for path in old:
        if path not in new:
            return f"{path} is gone"
    for path, entry in new.items():
        if entry != old[path]:
            return f"{path} was modified"
    return "the files are in another order"


def _sync_directory(folder: Path) -> None:
    # The renames of a part and of the manifest reach the disk in order only once the
    # directory itself is synced (POSIX); where a directory cannot be opened, skip it.
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
