"""``bertfit serve``: an exported classifier behind HTTP (Starlette on uvicorn).

Endpoints:

* ``POST /predict`` with ``{"instances": [{"sentence1": ..., "sentence2": ...}, ...]}`` answers
  ``{"predictions": [{"label", "class_id", "probabilities"}, ...]}`` in the same order;
* ``GET /health`` answers ``{"status": "ok"}`` once the model is loaded;
* ``GET /metadata``: task, text columns, labels, export format, versions and the limits.

Instances from concurrent requests are put together into one model call
(:class:`bertfit.serve.app.MicroBatcher`), up to ``max_batch_size`` instances or
``max_wait_ms`` of waiting for a batch to fill. Requests are bounded (body bytes, instances,
queued instances); every refusal is a JSON ``{"error": {"status", "message"}}`` with a 4xx
status (503 when overloaded), and only a bug gives a 500. Over-long texts are trimmed to the
model's length as in training, not refused.

This package's top level imports neither the server libraries nor the model runtime, so the
command-line parser can read the defaults cheaply; :mod:`bertfit.serve.app` holds the server.
"""

from __future__ import annotations

from dataclasses import dataclass

from bertfit.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


@dataclass
class ServeConfig:
    """Batching and request limits of the server."""

    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    max_body_bytes: int = 1 << 20
    max_instances: int = 256
    # Instances accepted but not yet answered; past this the server answers 503 (overloaded).
    max_queued: int = 4096

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first out-of-range setting."""
        for name in ("max_batch_size", "max_body_bytes", "max_instances", "max_queued"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not 0 <= self.max_wait_ms <= 10_000:
            raise ConfigError(f"max_wait_ms must be between 0 and 10000, got {self.max_wait_ms}")
        if self.max_instances > self.max_queued:
            raise ConfigError("max_instances must not exceed max_queued")


def serve(
    directory: str,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    config: ServeConfig | None = None,
    threads: int | None = None,
    access_log: bool = False,
) -> None:
    """Load an exported directory and serve it until interrupted."""
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
