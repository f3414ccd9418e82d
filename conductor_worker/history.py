"""The client's calls for runs kept over months: attempts, rerun and retry, bulk operations
by filter, and the task registry: what the clients return (history_ops.py has the calls)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from conductor.v1 import common_pb2

_OUTCOME_FROM_PB = {
    common_pb2.ATTEMPT_OUTCOME_RUNNING: "running",
    common_pb2.ATTEMPT_OUTCOME_SUCCEEDED: "succeeded",
    common_pb2.ATTEMPT_OUTCOME_FAILED: "failed",
    common_pb2.ATTEMPT_OUTCOME_RELEASED: "released",
    common_pb2.ATTEMPT_OUTCOME_CANCELLED: "cancelled",
}


@dataclass(frozen=True)
class ErrorInfo:
    """What went wrong in an attempt (Execution.error: the last failed one)."""

    type: str
    message: str
    traceback: str


@dataclass(frozen=True)
class Attempt:
    """One run of an execution: an attempt, or a release that gave its attempt back."""

    #: 1-based run number (releases included)
    number: int
    #: the attempt it counted as
    attempt: int
    worker_id: str
    started_at: datetime | None
    #: None while it runs
    finished_at: datetime | None
    #: running, succeeded, failed, released or cancelled
    outcome: str
    #: why it was released (empty otherwise)
    reason: str
    error: ErrorInfo | None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("started_at", "finished_at"):
            if data[key] is not None:
                data[key] = data[key].isoformat()
        return data


def time_of(message: Any, name: str) -> datetime | None:
    return getattr(message, name).ToDatetime(UTC) if message.HasField(name) else None


def attempt_from_pb(a: common_pb2.Attempt) -> Attempt:
    return Attempt(
        number=a.number,
        attempt=a.attempt,
        worker_id=a.worker_id,
        started_at=time_of(a, "started_at"),
        finished_at=time_of(a, "finished_at"),
        outcome=_OUTCOME_FROM_PB.get(a.outcome, "unknown"),
        reason=a.reason,
        error=ErrorInfo(a.error.type, a.error.message, a.error.traceback)
        if a.HasField("error")
        else None,
    )


@dataclass(frozen=True)
class BulkResult:
    """What a bulk operation matched and changed (changed is 0 for a dry run)."""

    matched: int
    changed: int


@dataclass(frozen=True)
class TaskInfo:
    """A registered task."""

    name: str
    #: workers connected now that serve it
    workers: list[str]
    last_seen: datetime | None
    #: nobody has served it for longer than the coordinator's --task-stale-after
    stale: bool
    #: retention in force, seconds per final state; redact_after None: never
    retention: dict[str, float]
    redact_after: float | None
