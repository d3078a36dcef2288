"""The Ray engine of bulk prediction: ``bertfit predict EXPORT ... --engine ray``.

The same job as :mod:`bertfit.bulk.engine` on Ray Data, on a laptop's local Ray or a cluster
(``--ray-address``): Ray's readers load the input files, ``map_batches`` sends the rows to a pool
of ``--workers`` actors each holding one exported predictor (ONNX Runtime, torch-free), and the
driver receives the prediction batches in input order and commits them through the same
:class:`~bertfit.bulk.parts.PartStore` as the in-process engine. So the output is the same file,
in the same order, appears only when complete, and the same command over it says so. Only the
prediction columns travel back to the driver (the texts stay in the workers), so it writes a few
dozen bytes a row.

The input is cut into blocks of ``--chunk-rows`` rows (:func:`read_blocks`), so that every
actor of the pool has blocks to work on. Each actor asks Ray for :data:`ACTOR_CPUS` CPUs: at
1 CPU each, a pool of 2 actors on a 2-CPU local Ray leaves no CPU to the read tasks and never
starts its first batch (measured with Ray 2.60 on a 2-CPU machine).

Differences from the in-process engine, where Ray Data decides: rows are located by their
position in the whole input (Ray's readers keep no line numbers); a line that Ray's CSV or JSON
reader cannot parse stops the job with Ray's own error; a stopped job restarted with the same
command keeps its committed parts but has Ray compute the rows before them again (Ray Data has
no offset to start a read from), skipping them on arrival.

``ray[data]`` is the ``ray`` extra; only this module imports it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa

from bertfit.bulk.engine import BulkOptions, BulkSummary, job_record, prepare, summary
from bertfit.bulk.model import is_export, load_model, result_columns
from bertfit.bulk.parts import PartStore
from bertfit.bulk.sinks import flat_names
from bertfit.bulk.sources import input_format
from bertfit.errors import ConfigError, DataError
from bertfit.progress import bar as progress_bar

#: CPUs Ray reserves for each predictor actor (see the module docstring).
ACTOR_CPUS = 0.5
PROBLEM = "__bertfit_problem"


class RowPredictor:
    """A Ray actor: one exported predictor, applied to a batch of input rows.

    Returns one row per input row: the kept columns, the prediction columns (null for a row
    that cannot be classified) and :data:`PROBLEM`, the reason a row was not classified.
    """

    def __init__(self, source, texts, keep, renamed, calibrated, with_logits, batch_size, threads):
        self.model = load_model(source, batch_size, threads)
        self.texts, self.keep, self.renamed = list(texts), list(keep), list(renamed)
        self.with_logits = with_logits
        regression = self.model.regression
        self.temperature = self.model.temperature if calibrated and not regression else 1.0

    def __call__(self, batch: pa.Table) -> pa.Table:
        count = batch.num_rows
        problems: list[str | None] = [None] * count
        columns = []
        for name in self.texts:
            if name not in batch.column_names:
                values = [None] * count
                problems = [p or f"column {name!r}: no such column" for p in problems]
            else:
                values = batch.column(name).to_pylist()
            for i, value in enumerate(values):
                if problems[i] is None and not isinstance(value, str):
                    kind = "missing text" if value is None else (
                        f"expected a string, got {type(value).__name__}"
                    )  # fmt: skip
                    problems[i] = f"column {name!r}: {kind}"
            columns.append(values)
        good = [i for i in range(count) if problems[i] is None]
        logits = self.model.logits([[column[i] for i in good] for column in columns])
        if not good:
            logits = np.zeros((0, self.model.outputs))
        results = pa.table(
            result_columns(
                logits,
                self.model.label_names,
                self.model.problem_type,
                self.temperature,
                self.with_logits,
                self.model.thresholds,
                self.model.temperature if not self.model.regression else None,
            )
        )
        position = {row: k for k, row in enumerate(good)}
        spread = results.take(pa.array([position.get(i) for i in range(count)], pa.int64()))
        kept = [
            batch.column(name) if name in batch.column_names else pa.nulls(count)
            for name in self.keep
        ]
        return pa.table(
            [*kept, *spread.columns, pa.array(problems, pa.string())],
            names=[*self.renamed, *spread.column_names, PROBLEM],
        )


def predict_bulk_ray(
    source: str | Path,
    options: BulkOptions,
    address: str | None = None,
    workers: int = 2,
    threads: int | None = None,
    progress: bool | None = None,
) -> BulkSummary:
    """:func:`bertfit.bulk.engine.predict_bulk` on Ray Data; see the module docstring.

    ``address`` is a Ray cluster's (``None``: the one this process is connected to, or a new
    local Ray); ``workers`` predictor actors, each with ``threads`` ONNX Runtime threads
    (``None``: ``options.threads``, or 1: ``workers`` actors then keep about ``workers`` cores
    busy).
    """
    # ray[data] (the ray extra) only on this path
    import ray
    import ray.data

    if not is_export(source):
        raise ConfigError(
            f"{source}: --engine ray runs an exported model (torch-free in every worker); "
            "export it first with `bertfit export`"
        )
    if options.on_error != "fail":
        raise ConfigError("--engine ray stops at a bad row; --on-error skip is in-process only")
    threads = threads or options.threads or 1
    model = load_model(source, options.batch_size, threads)
    job = prepare(model, options)
    store = PartStore.open(
        job.output, job_record(job, model, options, engine="ray"), options.overwrite
    )
    if store.complete:
        return summary(store, already_complete=True)
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # rows come back in input order
    context.enable_progress_bars = False
    dataset = read_blocks(job.files, job.layout, options.chunk_rows).map_batches(
        RowPredictor,
        fn_constructor_args=(
            str(Path(source).resolve()),
            job.layout.texts,
            job.layout.keep,
            job.renamed,
            options.calibrated,
            options.logits,
            options.batch_size,
            threads,
        ),
        batch_size=options.chunk_rows,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=ACTOR_CPUS,
    )
    resumed = len(store.parts)
    seen = 0
    bar_options = {"initial": store.committed_rows, "unit_scale": True, "leave": True}
    with progress_bar(
        desc="predicting", total=job.total, unit="rows", show=progress, **bar_options
    ) as bar:
        batches = dataset.iter_batches(batch_size=options.chunk_rows, batch_format="pyarrow")
        for index, batch in enumerate(batches):
            seen += batch.num_rows
            if index < resumed:
                continue
            problems = batch.column(PROBLEM).to_pylist()
            bad = next((i for i, p in enumerate(problems) if p is not None), None)
            if bad is not None:
                row = seen - batch.num_rows + bad + 1
                raise DataError(f"{options.input}: row {row} of the input, {problems[bad]}")
            store.commit(batch.drop_columns([PROBLEM]), [], batch.num_rows, job.kind)
            bar.update(batch.num_rows)
    if seen == 0:
        raise DataError(f"{options.input}: no rows to predict")
    header = flat_names(store.parts[0]["columns"], model.label_names) if job.kind == "csv" else ()
    store.finish(job.kind, header)
    return summary(store, resumed_parts=resumed)


def read_blocks(files: list[Path], layout, rows_per_block: int):
    """The input as a Ray dataset of blocks of at most ``rows_per_block`` rows, in input order.

    The actor pool hands out whole blocks, one to an actor at a time, and Ray 2.60's Parquet
    reader makes one block of many small files (8 files of 25,000 rows came back as one), so
    without the split one actor did all the work while the others waited. The split is Ray's
    streaming repartition: it cuts blocks as they are read and holds no more than they do.
    """
    return _read(files, layout).repartition(target_num_rows_per_block=rows_per_block)


def _read(files: list[Path], layout):
    # ray[data] only on this path
    import pyarrow.csv as pacsv
    import ray.data

    kinds = {input_format(path) for path in files}
    if len(kinds) > 1:
        raise DataError(
            f"--engine ray reads one file type at a time, got {', '.join(sorted(kinds))}"
        )
    kind = kinds.pop()
    paths = [str(path.resolve()) for path in files]
    if kind == "parquet":
        return ray.data.read_parquet(paths, columns=None)
    if kind == "jsonl":
        return ray.data.read_json(paths, lines=True)
    # Every column as text, as the in-process reader keeps CSV fields.
    from bertfit.bulk.sources import file_columns  # the header, as the in-process reader sees it

    names = file_columns(files[0], layout)
    header = names != list(layout.positional) or kind == "csv"
    read_options = pacsv.ReadOptions(column_names=None if header else names)
    parse = pacsv.ParseOptions(delimiter=",") if kind == "csv" else pacsv.ParseOptions(
        delimiter="\t", quote_char=False
    )  # fmt: skip
    convert = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in names}, strings_can_be_null=False
    )
    return ray.data.read_csv(
        paths, read_options=read_options, parse_options=parse, convert_options=convert
    )


__all__ = ["ACTOR_CPUS", "RowPredictor", "predict_bulk_ray", "read_blocks"]
