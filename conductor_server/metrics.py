"""Every coordinator metric, defined once, in a registry of the coordinator's own.

Names follow Prometheus conventions (base units, `_total` counters, `_seconds` histograms).
Labels are bounded: task names, outcomes, reasons, gRPC methods and codes; never ids.
"""

from __future__ import annotations

import threading
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
RUN_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)


class CoordinatorMetrics:
    """The coordinator's metrics; one instance per coordinator."""

    def __init__(self) -> None:
        #: labelled children by (metric name, label values): see labelled()
        self._children: dict[tuple[str, tuple[str, ...]], Any] = {}
        self.registry = CollectorRegistry()
        r = self.registry
        self.executions_started = Counter(
            "conductor_executions_started_total",
            "Attempts leased to workers.", ["task"], registry=r,
        )
        self.executions_finished = Counter(
            "conductor_executions_finished_total",
            "Ends of leased runs, by outcome: succeeded, failed, cancelled, retried "
            "(failed attempt, will retry), released (no attempt counted).",
            ["task", "outcome"], registry=r,
        )
        self.checkpoint_releases = Counter(
            "conductor_checkpoint_releases_total",
            "Executions released by workers, by reason (shutdown, window, sleep, cancelled).",
            ["task", "reason"], registry=r,
        )
        self.leases_expired = Counter(
            "conductor_leases_expired_total",
            "Leases that expired without a heartbeat (worker lost).", ["task"], registry=r,
        )
        self.steps_saved = Counter(
            "conductor_steps_saved_total", "Step results recorded.", ["task"], registry=r
        )
        self.dispatch_latency = Histogram(
            "conductor_dispatch_latency_seconds",
            "Time from an execution becoming ready to its lease.",
            ["task"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.run_time = Histogram(
            "conductor_execution_run_seconds",
            "Time from lease to the run's outcome, as seen by the coordinator.",
            ["task"], buckets=RUN_BUCKETS, registry=r,
        )
        self.queue_depth = Gauge(
            "conductor_queue_depth", "Pending executions whose run time has come.",
            ["task"], registry=r,
        )
        self.queue_waiting = Gauge(
            "conductor_queue_waiting", "Pending executions waiting for a later run time.",
            ["task"], registry=r,
        )
        self.queue_oldest_age = Gauge(
            "conductor_queue_oldest_ready_age_seconds",
            "Age of the oldest ready execution (0 when none is ready).", ["task"], registry=r,
        )
        self.queue_stats_seconds = Gauge(
            "conductor_queue_stats_seconds",
            "Time the last count behind the queue gauges took (they refresh every 5 s, or"
            " every 100 times this when that is longer).", registry=r,
        )
        self.streams_silent = Counter(
            "conductor_worker_streams_silent_total",
            "Worker streams closed because the worker was silent for two heartbeat intervals.",
            registry=r,
        )
        self.leases_returned_unstarted = Counter(
            "conductor_leases_returned_unstarted_total",
            "Expired leases that their worker had not started (prefetched), given back "
            "without counting an attempt.", ["task"], registry=r,
        )
        self.leases_unclaimed = Counter(
            "conductor_leases_unclaimed_total",
            "Leases a reconnecting worker never received (pushed into a dead stream), given "
            "back without counting an attempt.", ["task"], registry=r,
        )
        self.workers_connected = Gauge(
            "conductor_workers_connected", "Worker streams open on this coordinator.", registry=r
        )
        self.grpc_requests = Counter(
            "conductor_grpc_requests_total", "gRPC calls handled, by method and status code.",
            ["method", "code"], registry=r,
        )
        self.vacuums = Counter(
            "conductor_vacuums_total",
            "VACUUMs the coordinator ran on a churning table (conductor_server/vacuum.py).",
            ["table"], registry=r,
        )
        self.vacuum_seconds = Histogram(
            "conductor_vacuum_seconds", "Time one of the coordinator's VACUUMs took.",
            buckets=RUN_BUCKETS, registry=r,
        )
        self.maintenance_passes = Counter(
            "conductor_maintenance_passes_total",
            "Retention passes, by result: ran, skipped (another coordinator holds the lock), "
            "failed.", ["result"], registry=r,
        )
        self.maintenance_seconds = Histogram(
            "conductor_maintenance_pass_seconds", "Time a retention pass took.",
            buckets=RUN_BUCKETS, registry=r,
        )
        self.maintenance_deleted = Counter(
            "conductor_maintenance_deleted_total",
            "Finished executions deleted by retention, by final state.", ["state"], registry=r,
        )
        self.maintenance_events_deleted = Counter(
            "conductor_maintenance_events_deleted_total",
            "Emitted events deleted by retention.", registry=r,
        )
        self.maintenance_redacted = Counter(
            "conductor_maintenance_redacted_total",
            "Finished executions whose data was redacted, by final state.", ["state"],
            registry=r,
        )
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def labelled(self, metric: Any, *values: str) -> Any:
        """`metric.labels(*values)`, remembered: prometheus-client's labels() validates and
        locks on every call (1.5-4 us), which the per-lease and per-outcome paths would pay
        several times each. Only for metrics whose children are never removed."""
        key = (metric._name, values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def serve(self, host: str, port: int) -> int:
        """Expose /metrics over HTTP; returns the bound port."""
        self._server, self._thread = start_http_server(port, host, registry=self.registry)
        return int(self._server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
