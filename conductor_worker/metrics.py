"""Worker metrics, aggregated over the worker's pool processes (prometheus-client's
multiprocess mode). `enable()` must run in the worker's main process before any metric is
touched and before pool processes start: it points PROMETHEUS_MULTIPROC_DIR at a fresh
folder, which the (spawned) pool processes inherit.

Pool processes record handler run times and steps; the main process records outcomes,
releases, pool restarts and leases held. One /metrics endpoint serves the sum.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from typing import Any

ENV = "PROMETHEUS_MULTIPROC_DIR"


def enable(port: int, host: str = "0.0.0.0") -> tuple[int, str]:
    """Start the worker's /metrics endpoint; returns (bound port, multiprocess folder)."""
    folder = tempfile.mkdtemp(prefix="conductor-metrics-")
    os.environ[ENV] = folder
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    server, _ = start_http_server(port, host, registry=registry)
    return int(server.server_port), folder


def disable(folder: str) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def process_died(pid: int) -> None:
    """Drop a dead pool process's live gauges (its counters stay in the sum)."""
    if os.environ.get(ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


_lock = threading.Lock()
_metrics: Any = None
#: labelled children by (metric name, label values): see labelled()
_children: dict[tuple[str, tuple[str, ...]], Any] = {}


def labelled(metric: Any, *values: str) -> Any:
    """`metric.labels(*values)`, remembered: prometheus-client's labels() validates and locks
    on every call (1.5-4 us), which a run's path would pay several times. Only for metrics
    whose children are never removed (counters and histograms here)."""
    key = (metric._name, values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*values)
    return child


def metrics() -> Any:
    """The metric objects (created on first use, in whichever process uses them)."""
    global _metrics
    if _metrics is None:
        with _lock:
            if _metrics is None:
                _metrics = _create()
    return _metrics


def _create() -> Any:
    from prometheus_client import Counter, Gauge, Histogram

    class WorkerMetrics:
        executions = Counter(
            "conductor_worker_executions_total",
            "Runs ended on this worker, by outcome (succeeded, failed, released, abandoned).",
            ["task", "outcome"],
        )
        releases = Counter(
            "conductor_worker_checkpoint_releases_total",
            "Executions released by this worker, by reason.", ["task", "reason"],
        )
        handler_seconds = Histogram(
            "conductor_worker_handler_seconds", "Time a handler ran in a pool process.",
            ["task"], buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 3600),
        )
        steps = Counter(
            "conductor_worker_steps_total", "Steps run and recorded by pool processes.", ["task"]
        )
        restarts = Counter(
            "conductor_worker_pool_restarts_total", "Pool processes that died and were replaced.",
            ["task"],
        )
        leases = Gauge(
            "conductor_worker_leases_held", "Leases this worker holds.", multiprocess_mode="livesum"
        )
        stream_silences = Counter(
            "conductor_worker_stream_silences_total",
            "Streams given up because the coordinator was silent for two heartbeat intervals.",
        )

    return WorkerMetrics
