"""The in-process engine of ``bertfit predict SOURCE --input IN --output OUT``.

Reads the input a chunk at a time (:mod:`bertfit.bulk.sources`), sets aside the rows it cannot
classify, runs the model on the rest (in length-sorted batches, results put back in input
order), adds the prediction columns to the kept ones and commits the chunk as one part
(:mod:`bertfit.bulk.parts`). Started again with the same command, it skips the committed parts
and goes on; once all are in, it joins them into the output.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from bertfit.bulk.model import BulkModel, load_model, result_columns, result_names
from bertfit.bulk.parts import PartStore, input_fingerprint, parts_dir, rejects_path
from bertfit.bulk.sinks import flat_names, output_format
from bertfit.bulk.sources import (
    MISSING,
    Chunk,
    Layout,
    count_rows,
    input_files,
    read_chunks,
    resolve_keep,
)
from bertfit.errors import ConfigError, DataError
from bertfit.progress import bar as progress_bar

#: Rows per chunk, and so per committed part: what a killed run may have to redo, and about
#: what one chunk of strings and predictions holds in memory.
DEFAULT_CHUNK_ROWS = 10_000
ON_ERROR = ("fail", "skip")


@dataclass
class BulkOptions:
    """What to read, what to write and how: the flags of the bulk form of ``bertfit predict``."""

    input: str
    output: str
    text_a: str | None = None
    text_b: str | None = None
    keep: Sequence[str] | None = None  # None: every column that is not a text column
    logits: bool = False
    on_error: str = "fail"
    overwrite: bool = False
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    # `bertfit predict --batch-size`'s default (TrainerConfig.eval_batch_size), not imported
    # from there: bertfit.train loads torch, which an export is run without (tests/test_bulk.py
    # checks that the two agree).
    batch_size: int = 64
    #: Model threads (ONNX Runtime's intra-op threads, or torch's); None: the runtime's default
    #: (--engine ray: per actor, default 1). Not in the job's record: threads change the speed,
    #: not which rows go into which part or batch.
    threads: int | None = None
    calibrated: bool = True


@dataclass
class BulkSummary:
    """How a bulk prediction ended."""

    output: Path
    rows: int
    rejected: int
    rejects: Path | None
    resumed_parts: int = 0
    already_complete: bool = False

    def describe(self) -> str:
        """One line for the user."""
        rejected = f"; {self.rejected} rows rejected, see {self.rejects}" if self.rejected else ""
        if self.already_complete:
            return f"{self.output} is complete ({self.rows} rows{rejected}); nothing to do"
        resumed = (
            f", after {self.resumed_parts} parts committed before" if self.resumed_parts else ""
        )
        return f"wrote {self.rows} rows to {self.output}{resumed}{rejected}"


def predict_bulk(
    source: str | Path | BulkModel,
    options: BulkOptions,
    progress: bool | None = None,
    after_part: Callable[[int], None] | None = None,
) -> BulkSummary:
    """Classify every row of ``options.input`` into ``options.output``, resumably.

    ``source`` is a run, saved model or exported directory (or a loaded :class:`BulkModel`).
    ``after_part(k)`` is called once part ``k`` is committed (tests stop a run there).

    Raises:
        DataError: a bad row (unless ``on_error`` is ``"skip"``), a changed input or model.
        ConfigError: bad options, or an output that this command did not write.
    """
    model = source if isinstance(source, BulkModel) else None
    if model is None:
        _check_options(options)
        model = load_model(source, options.batch_size, options.threads)
    job = prepare(model, options)
    store = PartStore.open(job.output, job_record(job, model, options), options.overwrite)
    if store.complete:
        return summary(store, already_complete=True)
    resumed = len(store.parts)
    temperature = model.temperature if options.calibrated and not model.regression else 1.0
    files, layout, kind, renamed = job.files, job.layout, job.kind, job.renamed
    with progress_bar(
        desc="predicting",
        total=job.total,
        unit="rows",
        show=progress,
        initial=store.committed_rows,
        unit_scale=True,
        leave=True,
    ) as bar:
        chunks = 0
        for index, chunk in enumerate(read_chunks(files, layout, options.chunk_rows)):
            chunks += 1
            if index < resumed:
                _check_committed(store, index, chunk)
                continue
            table, rejects = _predict_chunk(chunk, layout, model, renamed, temperature, options)
            if rejects and options.on_error == "fail":
                first = rejects[0]
                raise DataError(
                    f"{first['where']}: {first['reason']} (--on-error skip sets such rows aside)"
                )
            store.commit(table, [_reject_record(r) for r in rejects], len(chunk), kind)
            bar.update(len(chunk))
            if after_part is not None:
                after_part(index)
    if chunks == 0:
        raise DataError(f"{options.input}: no rows to predict")
    if chunks < resumed:
        raise DataError(f"the input has fewer chunks than {parts_dir(job.output)} committed")
    header = flat_names(store.parts[0]["columns"], model.label_names) if kind == "csv" else ()
    store.finish(kind, header)
    return summary(store, resumed_parts=resumed)


@dataclass
class Job:
    """A bulk prediction resolved: files, columns, output format."""

    output: Path
    kind: str
    files: list[Path]
    layout: Layout
    renamed: list[str]  # the kept columns' names in the output
    total: int  # about how many rows, for the progress bar


def _check_options(options: BulkOptions) -> None:
    if options.on_error not in ON_ERROR:
        choices = ", ".join(ON_ERROR)
        raise ConfigError(f"on_error must be one of {choices}, got {options.on_error!r}")


def prepare(model: BulkModel, options: BulkOptions) -> Job:
    """Resolve the input files, the text and kept columns and the output format."""
    _check_options(options)
    output = Path(options.output).expanduser()
    kind = output_format(output)
    files = input_files(options.input)
    if output.exists() and any(output.samefile(file) for file in files):
        raise ConfigError(f"{output} is an input file; choose another --output")
    layout = _layout(files, model, options)
    renamed = _renamed_keep(layout.keep, model.problem_type, options.logits)
    return Job(output, kind, files, layout, renamed, count_rows(files))


def job_record(job: Job, model: BulkModel, options: BulkOptions, engine: str = "local") -> dict:
    """What the parts' manifest records of a job, to refuse going on with another."""
    return {
        "inputs": input_fingerprint(job.files),
        "model": {"source": model.source, "sha256": model.fingerprint},
        # What decides the rows; --on-error is left out so that a run stopped by a bad row can
        # go on with --on-error skip (the parts before it have no rejected rows).
        "options": {
            "texts": list(job.layout.texts),
            "keep": list(job.layout.keep),
            "logits": options.logits,
            "calibrated": options.calibrated,
            "chunk_rows": options.chunk_rows,
            "batch_size": options.batch_size,
            "format": job.kind,
            "engine": engine,  # the engines cut the input into parts differently
        },
    }


def _layout(files: list[Path], model: BulkModel, options: BulkOptions) -> Layout:
    names = model.input_names
    given = [name for name in (options.text_a, options.text_b) if name is not None]
    if options.text_a is None and options.text_b is not None:
        raise ConfigError("--text-b needs --text-a")
    if given and len(given) != len(names):
        flags = "--text-a" if len(names) == 1 else "--text-a and --text-b"
        raise ConfigError(
            f"this model reads {len(names)} text(s) ({', '.join(names)}): give {flags}"
        )
    texts = tuple(given) if given else tuple(names)
    # A headerless TSV file is read by position only when its columns are the model's own.
    layout = Layout(texts, positional=() if given else tuple(names))
    keep = None if options.keep is None else list(dict.fromkeys(options.keep))
    return resolve_keep(files, layout, keep)


def _renamed_keep(keep: Sequence[str], problem_type: str, logits: bool) -> list[str]:
    """Kept column names, with ``input_`` before a name that a prediction column has (an
    input's own ``label`` column is kept as ``input_label``)."""
    taken = set(result_names(problem_type, logits))
    renamed = [f"input_{name}" if name in taken else name for name in keep]
    clashes = [name for name in keep if name in taken]
    if clashes:
        print(
            f"note: input column(s) {', '.join(clashes)} kept as "
            f"{', '.join('input_' + name for name in clashes)} beside the predictions",
            file=sys.stderr,
        )
    return renamed


def _check_committed(store: PartStore, index: int, chunk: Chunk) -> None:
    if store.parts[index]["input_rows"] != len(chunk):
        raise DataError(
            f"{chunk.file}: its rows differ from those of part {index} in {store.folder}; "
            "rerun with --overwrite to start over"
        )


def _predict_chunk(
    chunk: Chunk,
    layout: Layout,
    model: BulkModel,
    kept_names: list[str],
    temperature: float,
    options: BulkOptions,
) -> tuple[pa.Table, list[dict[str, Any]]]:
    """The output rows of one chunk (kept columns, then predictions) and its rejected rows."""
    problems = dict(chunk.problems)
    for name, values in zip(layout.texts, chunk.texts):
        for index, value in enumerate(values):
            if index in problems or isinstance(value, str):
                continue
            if value is None or value is MISSING:
                problems[index] = (name, "missing text")
            else:
                problems[index] = (name, f"expected a string, got {type(value).__name__}")
    good = [i for i in range(len(chunk)) if i not in problems]
    columns = [[values[i] for i in good] for values in chunk.texts]
    logits = model.logits(columns) if good else _no_logits(model)
    results = result_columns(
        logits,
        model.label_names,
        model.problem_type,
        temperature,
        options.logits,
        model.thresholds,
        model.temperature if not model.regression else None,
    )
    kept = chunk.kept.take(pa.array(good, type=pa.int64())) if chunk.kept.num_columns else None
    arrays = [*(kept.columns if kept is not None else []), *results.values()]
    names = [*(kept_names if kept is not None else []), *results]
    rejects = [
        {"where": chunk.where(i, column), "file": str(chunk.file), chunk.unit: chunk.numbers[i],
         "column": column, "reason": reason}
        for i, (column, reason) in sorted(problems.items())
    ]  # fmt: skip
    return pa.table(arrays, names=names), rejects


def _no_logits(model: BulkModel) -> np.ndarray:
    return np.zeros((0, model.outputs), dtype=np.float32)


def _reject_record(reject: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in reject.items() if key != "where"}


def summary(store: PartStore, resumed_parts: int = 0, already_complete: bool = False):
    """The :class:`BulkSummary` of a store's job."""
    rejected = int(store.summary.get("rejected", 0))
    return BulkSummary(
        output=store.output,
        rows=int(store.summary.get("rows", 0)),
        rejected=rejected,
        rejects=rejects_path(store.output) if rejected else None,
        resumed_parts=resumed_parts,
        already_complete=already_complete,
    )
