"""The coordinator's configuration: one frozen object, from flags and CONDUCTOR_* variables."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .durations import LONGEST, parse_duration
from .validation import Limits

DEFAULT_PORT = 50051
MIB = 1024 * 1024
DAY = 86400.0


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
    #: Seconds past an execution timeout (counted from the lease's grant) before the
    #: coordinator itself ends the attempt as `Timeout` and refuses its writes: the worker's
    #: own kill comes first (the pool process's start, the stop signal's grace, the report).
    timeout_grace: float = 10.0
    #: Largest accepted payload, in bytes of JSON text.
    max_payload_bytes: int = MIB
    #: Largest result a handler may return, in bytes of JSON text.
    max_result_bytes: int = MIB
    #: Largest result of one step, in bytes of JSON text.
    max_step_result_bytes: int = MIB
    #: Most bytes of step results one execution may record in all (its lease carries them
    #: all, and a worker receives at most 64 MiB in one message).
    max_steps_bytes: int = 16 * MIB
    #: Error messages and tracebacks from handlers are cut to this many bytes.
    max_error_bytes: int = 64 * 1024
    #: Most ctx.logger lines kept per execution (later ones are dropped).
    max_log_lines: int = 1000
    #: Log lines are cut to this many bytes.
    max_log_line_bytes: int = 4096
    #: Longest task, schedule, step, worker and host name, in characters.
    max_name_length: int = 200
    #: Most tasks one worker may register.
    max_register_tasks: int = 1000
    #: Largest gRPC message the coordinator receives (a larger one is refused unread);
    #: None: 4 times the largest payload or result limit plus 1 MiB, at least 32 MiB.
    max_message_bytes: int | None = None
    #: Seconds a worker stream may stay open without sending Register.
    register_timeout: float = 10.0
    #: Seconds a connection with no call in progress stays open.
    idle_timeout: float = 300.0
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
    #: Default retention of finished executions, in seconds, per final state (a task's own
    #: @task(retention=...) wins); 0 deletes them as soon as they finish.
    retention_succeeded: float = 7 * DAY
    retention_failed: float = 30 * DAY
    retention_cancelled: float = 7 * DAY
    #: Seconds emitted events are kept (with their dedupe keys: an emit repeating a key
    #: older than this creates its executions again); 0 deletes them at the next pass.
    retention_events: float = 7 * DAY
    #: Default seconds after the end when payload, result, step results and error texts are
    #: dropped (the run's metadata stays); None: never.
    redact_after: float | None = None
    #: Seconds between maintenance passes (retention, redaction); one coordinator at a time.
    maintenance_interval: float = 60.0
    #: Executions deleted or redacted per statement (each its own short transaction).
    maintenance_batch: int = 1000
    #: The coordinator vacuums a churning table once it has this many dead rows (and 5% of
    #: its live ones), checked every second; 0 leaves vacuuming to autovacuum alone.
    vacuum_dead_rows: int = 10_000
    #: Seconds without any worker serving a task before it is marked stale.
    task_stale_after: float = 7 * DAY

    def __post_init__(self) -> None:
        for problem in _problems(self):
            raise ValueError(problem)

    @property
    def limits(self) -> Limits:
        return Limits(
            payload_bytes=self.max_payload_bytes,
            result_bytes=self.max_result_bytes,
            step_result_bytes=self.max_step_result_bytes,
            error_bytes=self.max_error_bytes,
            name_length=self.max_name_length,
            register_tasks=self.max_register_tasks,
        )

    @property
    def message_limit(self) -> int:
        """The receive limit in bytes (see max_message_bytes)."""
        if self.max_message_bytes is not None:
            return self.max_message_bytes
        biggest = max(self.max_payload_bytes, self.max_result_bytes, self.max_step_result_bytes)
        return max(32 * MIB, 4 * biggest + MIB)

    @property
    def heartbeat_interval(self) -> float:
        """Workers heartbeat three times per lease timeout."""
        return self.lease_timeout / 3

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with the given fields replaced (None values are ignored)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


_ENV: dict[str, tuple[str, Callable[[str], Any]]] = {
    "database_url": ("CONDUCTOR_DATABASE_URL", str),
    "data_dir": ("CONDUCTOR_DATA_DIR", Path),
    "host": ("CONDUCTOR_HOST", str),
    "port": ("CONDUCTOR_PORT", int),
    "lease_timeout": ("CONDUCTOR_LEASE_TIMEOUT", float),
    "timeout_grace": ("CONDUCTOR_TIMEOUT_GRACE", float),
    "max_payload_bytes": ("CONDUCTOR_MAX_PAYLOAD_BYTES", int),
    "max_result_bytes": ("CONDUCTOR_MAX_RESULT_BYTES", int),
    "max_step_result_bytes": ("CONDUCTOR_MAX_STEP_RESULT_BYTES", int),
    "max_steps_bytes": ("CONDUCTOR_MAX_STEPS_BYTES", int),
    "max_error_bytes": ("CONDUCTOR_MAX_ERROR_BYTES", int),
    "max_log_lines": ("CONDUCTOR_MAX_LOG_LINES", int),
    "max_log_line_bytes": ("CONDUCTOR_MAX_LOG_LINE_BYTES", int),
    "max_name_length": ("CONDUCTOR_MAX_NAME_LENGTH", int),
    "max_register_tasks": ("CONDUCTOR_MAX_REGISTER_TASKS", int),
    "max_message_bytes": ("CONDUCTOR_MAX_MESSAGE_BYTES", int),
    "register_timeout": ("CONDUCTOR_REGISTER_TIMEOUT", float),
    "idle_timeout": ("CONDUCTOR_IDLE_TIMEOUT", float),
    "log_format": ("CONDUCTOR_LOG_FORMAT", str),
    "metrics_port": ("CONDUCTOR_METRICS_PORT", int),
    "shutdown_delay": ("CONDUCTOR_SHUTDOWN_DELAY", float),
    "auth_token": ("CONDUCTOR_AUTH_TOKEN", str),
    "tls_cert": ("CONDUCTOR_TLS_CERT", Path),
    "tls_key": ("CONDUCTOR_TLS_KEY", Path),
    "tls_client_ca": ("CONDUCTOR_TLS_CLIENT_CA", Path),
    "retention_succeeded": ("CONDUCTOR_RETENTION_SUCCEEDED", parse_duration),
    "retention_failed": ("CONDUCTOR_RETENTION_FAILED", parse_duration),
    "retention_cancelled": ("CONDUCTOR_RETENTION_CANCELLED", parse_duration),
    "retention_events": ("CONDUCTOR_RETENTION_EVENTS", parse_duration),
    "redact_after": ("CONDUCTOR_REDACT_AFTER", parse_duration),
    "maintenance_interval": ("CONDUCTOR_MAINTENANCE_INTERVAL", parse_duration),
    "maintenance_batch": ("CONDUCTOR_MAINTENANCE_BATCH", int),
    "task_stale_after": ("CONDUCTOR_TASK_STALE_AFTER", parse_duration),
    "vacuum_dead_rows": ("CONDUCTOR_VACUUM_DEAD_ROWS", int),
}


def from_environment(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from CONDUCTOR_* variables, with flags (`overrides`, None values ignored) on
    top; checked once, as a whole (ValueError naming the flag)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for name, (var, kind) in _ENV.items():
        raw = env.get(var)
        if raw:
            try:
                values[name] = kind(raw)
            except ValueError as exc:
                raise ValueError(f"{var}: cannot read {raw!r}: {exc}") from exc
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(Settings)}
    assert set(values) <= known
    return Settings(**values)


def flag(name: str) -> str:
    """The command-line flag of a settings field."""
    return "--" + name.replace("_", "-")


#: fields that must be > 0, with the largest sensible value
_POSITIVE: dict[str, float] = {
    "lease_timeout": 86400.0,
    "timeout_grace": 3600.0,
    "reaper_interval": 3600.0,
    "register_timeout": 3600.0,
    "idle_timeout": 86400.0 * 365,
    "max_payload_bytes": 1024 * MIB,
    "max_result_bytes": 1024 * MIB,
    "max_step_result_bytes": 1024 * MIB,
    "max_steps_bytes": 48 * MIB,
    "max_error_bytes": 1024 * MIB,
    "max_log_lines": 1_000_000,
    "max_log_line_bytes": 1024 * 1024,
    "max_name_length": 100_000,
    "max_register_tasks": 1_000_000,
    "lease_batch_size": 100_000,
    "pool_size": 1000,
    "maintenance_interval": 86400.0,
    "maintenance_batch": 100_000,
    "task_stale_after": LONGEST,
}
#: durations that may be 0 (None: not set)
_DURATIONS = ("retention_succeeded", "retention_failed", "retention_cancelled", "retention_events",
              "redact_after")


def _problems(s: Settings) -> list[str]:
    """What is wrong with the settings, each naming the flag."""
    problems = []
    for name, most in _POSITIVE.items():
        value = getattr(s, name)
        if isinstance(value, bool) or not (0 < value <= most):  # NaN fails this too
            problems.append(f"{flag(name)}: must be > 0 and <= {most:.0f}, got {value!r}")
    for name in _DURATIONS:
        value = getattr(s, name)
        if value is not None and (isinstance(value, bool) or not 0 <= value <= LONGEST):
            problems.append(f"{flag(name)}: must be 0 to 100 years in seconds, got {value!r}")
    for name in ("port", "metrics_port"):
        value = getattr(s, name)
        if value is not None and not 0 <= value <= 65535:
            problems.append(f"{flag(name)}: must be a port 0..65535, got {value!r}")
    if isinstance(s.vacuum_dead_rows, bool) or not 0 <= s.vacuum_dead_rows <= 10**12:
        problems.append(f"--vacuum-dead-rows: must be 0 (off) to 10^12, got {s.vacuum_dead_rows!r}")
    problems += _tls_problems(s)
    if not 0 <= s.shutdown_delay <= 3600:
        problems.append(f"--shutdown-delay: must be 0..3600 seconds, got {s.shutdown_delay!r}")
    if s.log_format not in ("text", "json"):
        problems.append(f"--log-format: must be text or json, got {s.log_format!r}")
    biggest = max(s.max_payload_bytes, s.max_result_bytes, s.max_step_result_bytes)
    most = 2047 * MIB
    if not problems and s.max_message_bytes is not None and not (
        biggest + 64 * 1024 <= s.max_message_bytes <= most
    ):
        problems.append(f"--max-message-bytes: must be {biggest + 64 * 1024}..{most} (the "
                        f"payload and result limits plus 64 KiB), got {s.max_message_bytes}")
    if not problems and s.message_limit > most:
        problems.append("--max-payload-bytes: payload and result limits must be under 511 MiB")
    return problems


def _tls_problems(s: Settings) -> list[str]:
    problems = []
    if (s.tls_cert is None) != (s.tls_key is None):
        problems.append("--tls-cert: TLS needs both --tls-cert and --tls-key")
    elif s.tls_client_ca is not None and s.tls_cert is None:
        problems.append("--tls-client-ca: needs --tls-cert and --tls-key")
    for name in ("tls_cert", "tls_key", "tls_client_ca"):
        path = getattr(s, name)
        if path is not None and not path.is_file():
            problems.append(f"{flag(name)}: {str(path)[:200]!r} is not a readable file")
    return problems
