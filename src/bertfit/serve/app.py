"""The HTTP application of ``bertfit serve``: routes, request checks and micro-batching.

See :mod:`bertfit.serve` for the endpoints and limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

import bertfit
from bertfit.predictions import prediction_rows
from bertfit.probabilities import sigmoid, softmax
from bertfit.problem import MULTI_LABEL, REGRESSION
from bertfit.serve.config import ServeConfig
from bertfit.serve.page import render_page


class Overloaded(Exception):
    """More instances are waiting than ``max_queued`` allows."""


@dataclass
class _Job:
    columns: list[list[str]]
    future: asyncio.Future

    @property
    def size(self) -> int:
        return len(self.columns[0])


class MicroBatcher:
    """Gathers the instances of concurrent requests into batched model calls.

    ``run_batch`` takes text columns and returns logits [n, classes]; it runs on one worker
    thread, so the event loop keeps accepting requests meanwhile. A batch closes when it holds
    ``max_batch_size`` instances or ``max_wait_ms`` after its first request arrived, whichever
    comes first; requests that arrive while the model is busy form the next batch.
    """

    def __init__(
        self,
        run_batch: Callable[[list[list[str]]], np.ndarray],
        max_batch_size: int,
        max_wait_ms: float,
        max_queued: int,
    ) -> None:
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.max_queued = max_queued
        self.queued = 0
        self.batch_sizes: list[int] = []  # for tests and metrics: instances per model call
        self._queue: asyncio.Queue[_Job] | None = None
        self._worker: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bertfit-model")

    async def start(self) -> None:
        """Start the batching task on the running event loop."""
        self._queue = asyncio.Queue()
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop the batching task and the model thread."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._executor.shutdown(wait=True)

    async def submit(self, columns: list[list[str]]) -> np.ndarray:
        """Logits of the rows of ``columns``, computed in a batch with other requests' rows."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        job = _Job(columns, asyncio.get_running_loop().create_future())
        if self.queued + job.size > self.max_queued:
            raise Overloaded(f"{self.queued} instances are waiting (limit {self.max_queued})")
        self.queued += job.size
        self._queue.put_nowait(job)
        try:
            return await job.future
        finally:
            self.queued -= job.size

    async def call(self, function: Callable[[], Any], size: int) -> Any:
        """Run ``function`` on the model thread between batches, counted as ``size`` queued
        instances (explanations run many masked copies of a row, not one batched row)."""
        if self.queued + size > self.max_queued:
            raise Overloaded(f"{self.queued} instances are waiting (limit {self.max_queued})")
        self.queued += size
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, function)
        finally:
            self.queued -= size

    async def _next_batch(self) -> list[_Job]:
        assert self._queue is not None
        jobs = [await self._queue.get()]
        size = jobs[0].size
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while size < self.max_batch_size:
            if self._queue.empty():
                timeout = deadline - asyncio.get_running_loop().time()
                if timeout <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), timeout)
                except asyncio.TimeoutError:
                    break
            else:
                job = self._queue.get_nowait()
            jobs.append(job)
            size += job.size
        return jobs

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._next_batch()
            columns = [
                list(itertools.chain.from_iterable(job.columns[i] for job in jobs))
                for i in range(len(jobs[0].columns))
            ]
            self.batch_sizes.append(len(columns[0]))
            try:
                logits = await loop.run_in_executor(self._executor, self.run_batch, columns)
            except Exception as error:  # a failed model call fails its requests, not the server
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(error)
                continue
            start = 0
            for job in jobs:
                if not job.future.done():  # its client may have gone away
                    job.future.set_result(logits[start : start + job.size])
                start += job.size


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "message": message}}, status_code=status)


class RequestError(Exception):
    """A request the server refuses with ``status`` and a message naming the problem."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def read_json_body(request: Request, limit: int) -> Any:
    """The request's JSON body, refusing bodies over ``limit`` bytes without reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"request body of {declared} bytes exceeds the limit of {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise RequestError(413, f"request body exceeds the limit of {limit} bytes")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise RequestError(400, f"malformed JSON body: {error}") from None


def parse_calibrated(body: Any) -> bool:
    """The request's ``"calibrated"`` flag: true (the default) for probabilities scaled by the
    model's temperature, false for the raw softmax."""
    value = body.get("calibrated", True) if isinstance(body, dict) else True
    if not isinstance(value, bool):
        raise RequestError(422, f"'calibrated' must be true or false, got {_json_type(value)}")
    return value


def parse_label(body: Any, label_names: list[str], problem_type: str) -> str | None:
    """``/explain``'s ``"label"``: the label to attribute toward (None: the predicted one)."""
    value = body.get("label") if isinstance(body, dict) else None
    if value is None:
        return None
    if not isinstance(value, str):
        raise RequestError(422, f"'label' must be a label name, got {_json_type(value)}")
    if problem_type == REGRESSION:
        raise RequestError(422, "'label': a regression model has no labels to explain toward")
    if value not in label_names:
        raise RequestError(422, f"'label': unknown label {value!r}; expected one of {label_names}")
    return value


def parse_instances(
    body: Any, input_names: list[str], max_instances: int, fields: tuple[str, ...] = ()
) -> list[list[str]]:
    """Text columns from ``{"instances": [{name: text, ...}, ...]}``; refusals name the field.

    The body may also hold ``"calibrated"`` and the other top-level ``fields``."""
    if not isinstance(body, dict):
        raise RequestError(422, f"expected a JSON object with 'instances', got {_json_type(body)}")
    allowed = ("calibrated", *fields)
    unknown = sorted(set(body) - {"instances", *allowed})
    if unknown:
        also = ", ".join(repr(name) for name in allowed)
        raise RequestError(422, f"unknown field {unknown[0]!r}; expected 'instances' (and {also})")
    instances = body.get("instances")
    if not isinstance(instances, list):
        raise RequestError(422, f"'instances' must be a list, got {_json_type(instances)}")
    if len(instances) > max_instances:
        raise RequestError(
            413, f"{len(instances)} instances in one request; the limit is {max_instances}"
        )
    columns: list[list[str]] = [[] for _ in input_names]
    for index, instance in enumerate(instances):
        where = f"instances[{index}]"
        if not isinstance(instance, dict):
            raise RequestError(422, f"{where} must be an object, got {_json_type(instance)}")
        extra = sorted(set(instance) - set(input_names))
        if extra:
            raise RequestError(422, f"{where}: unknown field {extra[0]!r}; expected {input_names}")
        for column, name in zip(columns, input_names):
            if name not in instance:
                raise RequestError(422, f"{where}: missing field {name!r}")
            text = instance[name]
            if not isinstance(text, str):
                raise RequestError(422, f"{where}.{name} must be a string, got {_json_type(text)}")
            if not text.strip():
                raise RequestError(422, f"{where}.{name} is empty; give some text to classify")
            column.append(text)
    return columns


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


def explain_row(
    predictor, texts: list[str], calibrated: bool, label: str | None = None
) -> dict[str, Any]:
    """The ``/explain`` answer for one instance: its occlusion explanation toward ``label``
    (None: the predicted one) as a dict, with raw probabilities when ``calibrated`` is False."""
    explanation = predictor.explain(texts, target=label).to_dict()
    if not calibrated and explanation["probabilities"] is not None:
        raw = sigmoid if predictor.problem_type == MULTI_LABEL else softmax
        explanation["probabilities"] = raw(np.asarray(explanation["logits"])).tolist()
    return explanation


def metadata_of(predictor, config: ServeConfig) -> dict[str, Any]:
    """What ``GET /metadata`` answers."""
    from importlib import metadata  # read per request to /metadata, not at server start

    manifest = predictor.manifest
    runtime = {"bertfit": bertfit.__version__}
    for package in ("onnxruntime", "tokenizers", "numpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            runtime[package] = metadata.version(package)
    return {
        "task": predictor.task,
        "input_names": predictor.input_names,
        "problem_type": predictor.problem_type,
        "labels": predictor.label_names,
        "max_seq_length": predictor.max_seq_length,
        "truncator": predictor.truncator,
        # Probabilities are softmax(logits / temperature) unless a request says calibrated=false;
        # a model trained before calibration has no fitted temperature and uses 1.
        "temperature": getattr(predictor, "temperature", 1.0),
        "calibrated": getattr(getattr(predictor, "spec", None), "temperature", None) is not None,
        # A multi-label model's decision thresholds, one per label (null: 0.5 each).
        "thresholds": getattr(predictor, "thresholds", None),
        "export": manifest.get("export"),
        "exported_with": manifest.get("versions"),
        "created": manifest.get("created"),
        "runtime": runtime,
        "limits": asdict(config),
    }


def create_app(predictor, config: ServeConfig | None = None) -> Starlette:
    """The Starlette application serving ``predictor`` (an ``ExportedClassifier``)."""
    config = config or ServeConfig()
    config.validate()
    batcher = MicroBatcher(
        lambda columns: predictor.logits(columns, config.max_batch_size),
        config.max_batch_size,
        config.max_wait_ms,
        config.max_queued,
    )
    info = metadata_of(predictor, config)
    page_html = render_page(info)

    async def read_request(request: Request, fields: tuple[str, ...] = ()) -> tuple:
        """The instances' text columns, whether to calibrate (/predict and /explain alike) and
        the body, whose other ``fields`` are allowed."""
        body = await read_json_body(request, config.max_body_bytes)
        columns = parse_instances(body, predictor.input_names, config.max_instances, fields)
        return columns, parse_calibrated(body), body

    async def predict(request: Request) -> JSONResponse:
        try:
            columns, calibrated, _ = await read_request(request)
        except RequestError as error:
            return _error(error.status, str(error))
        if not columns[0]:
            return JSONResponse({"predictions": []})
        try:
            logits = await batcher.submit(columns)
        except Overloaded as error:
            return _error(503, f"server busy: {error}; retry later")
        temperature = info["temperature"]
        rows = prediction_rows(
            logits,
            predictor.problem_type,
            predictor.label_names,
            temperature if calibrated else 1.0,
            info["thresholds"],
            temperature,
        )
        return JSONResponse({"predictions": rows})

    async def explain(request: Request) -> JSONResponse:
        try:
            columns, calibrated, body = await read_request(request, ("label",))
            label = parse_label(body, predictor.label_names, predictor.problem_type)
        except RequestError as error:
            return _error(error.status, str(error))
        rows = [list(row) for row in zip(*columns)]
        try:
            explanations = await batcher.call(
                lambda: [explain_row(predictor, row, calibrated, label) for row in rows], len(rows)
            )
        except Overloaded as error:
            return _error(503, f"server busy: {error}; retry later")
        return JSONResponse({"explanations": explanations})

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(page_html)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def metadata(request: Request) -> JSONResponse:
        return JSONResponse(info)

    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return _error(error.status_code, error.detail)

    async def server_error(request: Request, error: Exception) -> JSONResponse:
        return _error(500, f"internal error: {type(error).__name__}")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = Starlette(
        routes=[
            Route("/", page, methods=["GET"]),
            Route("/predict", predict, methods=["POST"]),
            Route("/explain", explain, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/metadata", metadata, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error, Exception: server_error},
        lifespan=lifespan,
    )
    app.state.batcher = batcher
    return app
