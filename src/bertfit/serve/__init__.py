"""``bertfit serve``: an exported classifier behind HTTP (Starlette on uvicorn).

Endpoints:

* ``POST /predict`` with ``{"instances": [{"sentence1": ..., "sentence2": ...}, ...]}`` answers
  ``{"predictions": [{"label", "class_id", "probabilities", "logits"}, ...]}`` in the same
  order (a regression model: ``{"score", "logits"}``), the rows ``bertfit predict`` prints
  (:func:`bertfit.predictions.prediction_rows`); the probabilities are calibrated with the
  model's temperature, or raw with ``"calibrated": false`` in the body;
* ``POST /explain`` with the same body answers ``{"explanations": [...]}``: each instance's
  label, probabilities and every input word's occlusion attribution
  (:class:`bertfit.explain.Explanation`), under the same limits and refusals as ``/predict``;
* ``GET /`` is a page to try the model in a browser (:mod:`bertfit.serve.page`);
* ``GET /health`` answers ``{"status": "ok"}`` once the model is loaded;
* ``GET /metadata``: task, text columns, problem type, labels, export format, versions and the
  limits.

Instances from concurrent requests are put together into one model call
(:class:`bertfit.serve.app.MicroBatcher`), up to ``max_batch_size`` instances or
``max_wait_ms`` of waiting for a batch to fill. Requests are bounded (body bytes, instances,
queued instances); every refusal is a JSON ``{"error": {"status", "message"}}`` with a 4xx
status (503 when overloaded), and only a bug gives a 500. Over-long texts are trimmed to the
model's length as in training, not refused.

This package's top level imports neither the server libraries nor the model runtime, so the
command-line parser can read the defaults cheaply: :mod:`bertfit.serve.config` holds the
settings, :mod:`bertfit.serve.app` the server.
"""

from __future__ import annotations

from bertfit.serve.config import DEFAULT_HOST, DEFAULT_PORT, ServeConfig

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "ServeConfig", "serve"]


def serve(
    directory: str,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    config: ServeConfig | None = None,
    threads: int | None = None,
    access_log: bool = False,
) -> None:
    """Load an exported directory and serve it until interrupted."""
    # The server libraries (the serve extra) load only when a server starts.
    import uvicorn

    from bertfit.export.runtime import load_exported
    from bertfit.serve.app import create_app

    config = config or ServeConfig()
    config.validate()
    predictor = load_exported(
        directory, batch_size=config.max_batch_size, threads=threads, spin_wait=False
    )
    app = create_app(predictor, config)
    uvicorn.run(app, host=host, port=port, access_log=access_log, log_level="info")
