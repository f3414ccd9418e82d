"""The coordinator's configuration: one frozen object, from flags and CONDUCTOR_* variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

DEFAULT_PORT = 50051


def default_data_dir() -> Path:
    """Where the embedded database lives: $CONDUCTOR_DATA_DIR or the user's data folder."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(os.environ.get("CONDUCTOR_DATA_DIR") or Path(base) / "conductor")


@dataclass(frozen=True)
class Settings:
    """Everything the coordinator can be told."""

    #: PostgreSQL URL; None starts the embedded PostgreSQL in data_dir.
    database_url: str | None = None
    #: Folder of the embedded PostgreSQL (kept between runs).
    data_dir: Path = field(default_factory=default_data_dir)
    #: Address to listen on.
    host: str = "127.0.0.1"
    #: Port to listen on; 0 picks a free one.
    port: int = DEFAULT_PORT
    #: Seconds a lease lives without a heartbeat.
    lease_timeout: float = 30.0
    #: Largest accepted payload, in bytes of JSON text.
    max_payload_bytes: int = 1024 * 1024
    #: Seconds between lease-expiry sweeps.
    reaper_interval: float = 1.0
    #: Most executions leased to a worker in one batch.
    lease_batch_size: int = 256
    #: Connections in the database pool.
    pool_size: int = 8
    #: "text" or "json".
    log_format: str = "text"
    #: Seconds between health turning NOT_SERVING and the server closing (lets load balancers
    #: and probes notice before connections are refused).
    shutdown_delay: float = 0.0
    #: Port of the Prometheus /metrics endpoint; None turns it off, 0 picks a free one.
    metrics_port: int | None = None
    #: Bearer token required from clients and workers; None allows anyone.
    auth_token: str | None = field(default=None, repr=False)
    #: Server certificate and key (PEM) to serve TLS; None serves plaintext.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: CA (PEM) that client certificates must chain to; None does not ask for them.
    tls_client_ca: Path | None = None

    @property
    def heartbeat_interval(self) -> float:
        """Workers heartbeat three times per lease timeout."""
        return self.lease_timeout / 3

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with the given fields replaced (None values are ignored)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


_ENV = {
    "database_url": ("CONDUCTOR_DATABASE_URL", str),
    "data_dir": ("CONDUCTOR_DATA_DIR", Path),
    "host": ("CONDUCTOR_HOST", str),
    "port": ("CONDUCTOR_PORT", int),
    "lease_timeout": ("CONDUCTOR_LEASE_TIMEOUT", float),
    "max_payload_bytes": ("CONDUCTOR_MAX_PAYLOAD_BYTES", int),
    "log_format": ("CONDUCTOR_LOG_FORMAT", str),
    "metrics_port": ("CONDUCTOR_METRICS_PORT", int),
    "shutdown_delay": ("CONDUCTOR_SHUTDOWN_DELAY", float),
    "auth_token": ("CONDUCTOR_AUTH_TOKEN", str),
    "tls_cert": ("CONDUCTOR_TLS_CERT", Path),
    "tls_key": ("CONDUCTOR_TLS_KEY", Path),
    "tls_client_ca": ("CONDUCTOR_TLS_CLIENT_CA", Path),
}


def from_environment(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from CONDUCTOR_* variables; flags are applied on top with with_overrides."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for name, (var, kind) in _ENV.items():
        raw = env.get(var)
        if raw:
            try:
                values[name] = kind(raw)
            except ValueError as exc:
                raise ValueError(f"{var}: cannot read {raw!r}: {exc}") from exc
    known = {f.name for f in fields(Settings)}
    assert set(values) <= known
    return Settings(**values)
