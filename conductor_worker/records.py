"""What the client API returns: executions, schedules, steps, workers and queues, as frozen
dataclasses, and their conversions from protobuf (shared by Client and AsyncClient)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from conductor.v1 import client_pb2, common_pb2

from .encoding import STATE_FROM_PB
from .history import Attempt, ErrorInfo, attempt_from_pb

FINISHED = frozenset(("succeeded", "failed", "cancelled"))


@dataclass(frozen=True)
class Execution:
    """An execution as the coordinator stores it."""

    id: str
    task: str
    state: str
    attempt: int
    max_attempts: int
    payload: Any
    result: Any
    error: ErrorInfo | None
    priority: int
    queue: str
    created_at: datetime | None
    run_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    dedupe_key: str | None
    cancel_requested: bool
    schedule: str | None = None
    fire_time: datetime | None = None
    #: the execution whose ctx.invoke created this one
    parent_id: str | None = None
    #: what a pending execution waits for ("children:STEP", "signal:STEP", "event:STEP")
    waiting_for: str | None = None
    #: every run so far, oldest first (filled by get and wait, not by list)
    attempts: tuple[Attempt, ...] = ()
    #: the execution this one reruns
    rerun_of: str | None = None
    #: when its data was redacted (the task's redact_after)
    redacted_at: datetime | None = None
    #: for a dead letter (an on_failure task's execution): the execution that failed
    dead_letter_of: str | None = None
    #: the execution timeout its attempts run under, in seconds (None: none)
    timeout: float | None = None
    #: its concurrency / rate-limit key (None: none)
    concurrency_key: str | None = None
    #: why it is not running, when pending (filled by get, not by list or wait)
    explanation: Explanation | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (times as ISO 8601)."""
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, datetime):
                data[key] = value.isoformat()
        data["attempts"] = [a.to_dict() for a in self.attempts]
        data["explanation"] = self.explanation.to_dict() if self.explanation else None
        return data


#: ExplanationReason values by their short names
EXPLANATION_REASONS = {
    common_pb2.EXPLANATION_REASON_READY: "ready",
    common_pb2.EXPLANATION_REASON_RUN_AT: "run_at",
    common_pb2.EXPLANATION_REASON_WINDOW: "window",
    common_pb2.EXPLANATION_REASON_CONCURRENCY: "concurrency",
    common_pb2.EXPLANATION_REASON_KEY_CONCURRENCY: "key_concurrency",
    common_pb2.EXPLANATION_REASON_RATE_LIMITED: "rate_limited",
    common_pb2.EXPLANATION_REASON_NO_WORKER: "no_worker",
    common_pb2.EXPLANATION_REASON_WAITING_CHILDREN: "waiting_children",
    common_pb2.EXPLANATION_REASON_WAITING_EVENT: "waiting_event",
    common_pb2.EXPLANATION_REASON_WAITING_SIGNAL: "waiting_signal",
}


@dataclass(frozen=True)
class Explanation:
    """Why a pending execution is not running: `reason` is one of "ready", "run_at",
    "window", "concurrency", "key_concurrency", "rate_limited", "no_worker",
    "waiting_children", "waiting_event", "waiting_signal"; `message` says it in English;
    `until` is when the obstacle goes away (if known); `execution_ids` are the executions
    in the way (the running ones holding a cap, the unfinished children)."""

    reason: str
    message: str
    until: datetime | None = None
    execution_ids: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "message": self.message,
                "until": self.until.isoformat() if self.until else None,
                "execution_ids": list(self.execution_ids)}


def explanation_from_pb(e: common_pb2.Execution) -> Explanation | None:
    if not e.HasField("explanation"):
        return None
    x = e.explanation
    return Explanation(EXPLANATION_REASONS.get(x.reason, "unknown"), x.message,
                       _time(x.until, x.HasField("until")), tuple(x.execution_ids))


def _time(ts: Timestamp, present: bool) -> datetime | None:
    return ts.ToDatetime(UTC) if present else None


def execution_from_pb(e: common_pb2.Execution) -> Execution:
    return Execution(
        id=e.id,
        task=e.task,
        state=STATE_FROM_PB.get(e.state, "unknown"),
        attempt=e.attempt,
        max_attempts=e.max_attempts,
        payload=json.loads(e.payload_json) if e.payload_json else None,
        result=json.loads(e.result_json) if e.result_json else None,
        error=ErrorInfo(e.error.type, e.error.message, e.error.traceback)
        if e.HasField("error")
        else None,
        priority=e.priority,
        queue=e.queue,
        created_at=_time(e.created_at, e.HasField("created_at")),
        run_at=_time(e.run_at, e.HasField("run_at")),
        started_at=_time(e.started_at, e.HasField("started_at")),
        finished_at=_time(e.finished_at, e.HasField("finished_at")),
        dedupe_key=e.dedupe_key or None,
        cancel_requested=e.cancel_requested,
        schedule=e.schedule or None,
        fire_time=_time(e.fire_time, e.HasField("fire_time")),
        parent_id=e.parent_id or None,
        waiting_for=e.waiting_for or None,
        attempts=tuple(attempt_from_pb(a) for a in e.attempts),
        rerun_of=e.rerun_of or None,
        redacted_at=_time(e.redacted_at, e.HasField("redacted_at")),
        dead_letter_of=e.dead_letter_of or None,
        timeout=e.timeout_seconds or None,
        concurrency_key=e.concurrency_key or None,
        explanation=explanation_from_pb(e),
    )


MISSED = {
    "latest": client_pb2.MISSED_FIRE_POLICY_LATEST,
    "skip": client_pb2.MISSED_FIRE_POLICY_SKIP,
    "all": client_pb2.MISSED_FIRE_POLICY_ALL,
}
_MISSED_FROM_PB = {v: k for k, v in MISSED.items()}


@dataclass(frozen=True)
class Schedule:
    """A cron schedule of a task."""

    task: str
    name: str
    cron: str
    timezone: str
    payload: Any
    static: bool
    missed: str
    missed_limit: int
    next_fire_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.next_fire_at is not None:
            data["next_fire_at"] = self.next_fire_at.isoformat()
        return data


def schedule_from_pb(s: client_pb2.Schedule) -> Schedule:
    return Schedule(
        task=s.task,
        name=s.name,
        cron=s.cron,
        timezone=s.timezone,
        payload=json.loads(s.payload_json) if s.payload_json else None,
        static=s.static,
        missed=_MISSED_FROM_PB.get(s.missed, "latest"),
        missed_limit=s.missed_limit,
        next_fire_at=_time(s.next_fire_at, s.HasField("next_fire_at")),
    )


@dataclass(frozen=True)
class Step:
    """A recorded step."""

    name: str
    result: Any
    saved_at: datetime


@dataclass(frozen=True)
class WorkerInfo:
    """A connected worker."""

    worker_id: str
    hostname: str
    pid: int
    tasks: list[str]
    leases: int
    connected_at: datetime
    last_seen: datetime
    coordinator: str
    #: leases it accepts at once over all its tasks (0: not known)
    capacity: int = 0


@dataclass(frozen=True)
class QueueInfo:
    """Queue figures of one task."""

    task: str
    ready: int
    waiting: int
    running: int
    oldest_ready_age_seconds: float
    #: workers connected now that serve the task (0: nothing will run it)
    live_workers: int = 0


def step_from_pb(s: client_pb2.Step) -> Step:
    return Step(s.name, json.loads(s.result_json), s.saved_at.ToDatetime(UTC))


def worker_from_pb(w: client_pb2.Worker) -> WorkerInfo:
    return WorkerInfo(
        w.worker_id, w.hostname, w.pid, list(w.tasks), w.leases,
        w.connected_at.ToDatetime(UTC), w.last_seen.ToDatetime(UTC), w.coordinator, w.capacity,
    )


def queue_from_pb(q: client_pb2.QueueStats) -> QueueInfo:
    return QueueInfo(
        q.task, q.ready, q.waiting, q.running, q.oldest_ready_age_seconds, q.live_workers
    )


@dataclass(frozen=True)
class CoordinatorStatus:
    """What `Client.status()` tells of the coordinator."""

    version: str
    name: str
    database: str
    data_dir: str | None
    database_ok: bool
    database_error: str


@dataclass(frozen=True)
class LogEntry:
    """A line an execution's handler logged through ctx.logger."""

    sequence: int
    attempt: int
    level: str
    message: str
    logged_at: datetime
