"""Where the server listens and the limits it keeps, readable without the server libraries."""

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
