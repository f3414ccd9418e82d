"""The client's calls for runs kept over months: attempts, rerun and retry, bulk operations
by filter, and the task registry (mixed into Client)."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from conductor.v1 import client_pb2, client_pb2_grpc, common_pb2

from .encoding import dumps, states_to_pb
from .errors import InvalidArgument

T = TypeVar("T")

#: seconds a bulk call may take (it works through every matching execution)
BULK_TIMEOUT = 600.0

_OUTCOME_FROM_PB = {
    common_pb2.ATTEMPT_OUTCOME_RUNNING: "running",
    common_pb2.ATTEMPT_OUTCOME_SUCCEEDED: "succeeded",
    common_pb2.ATTEMPT_OUTCOME_FAILED: "failed",
    common_pb2.ATTEMPT_OUTCOME_RELEASED: "released",
    common_pb2.ATTEMPT_OUTCOME_CANCELLED: "cancelled",
}
_BULK_ACTIONS = {
    "cancel": client_pb2.BULK_ACTION_CANCEL,
    "retry": client_pb2.BULK_ACTION_RETRY,
    "delete": client_pb2.BULK_ACTION_DELETE,
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


def _time(message: Any, name: str) -> datetime | None:
    return getattr(message, name).ToDatetime(UTC) if message.HasField(name) else None


def attempt_from_pb(a: common_pb2.Attempt) -> Attempt:
    return Attempt(
        number=a.number,
        attempt=a.attempt,
        worker_id=a.worker_id,
        started_at=_time(a, "started_at"),
        finished_at=_time(a, "finished_at"),
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


class HistoryCalls:
    """Client methods; Client provides `_call`, `_stub` and `_execution`."""

    _stub: client_pb2_grpc.ConductorServiceStub

    def _call(
        self, method: Callable[..., T], request: Any, timeout: float | None = None, *,
        retry: bool = False,
    ) -> T:
        raise NotImplementedError  # Client's

    def _execution(self, pb: common_pb2.Execution) -> Any:
        raise NotImplementedError  # Client's

    def attempts(self, execution_id: str) -> builtins.list[Attempt]:
        """Every run of an execution, oldest first: failures, releases, the one running."""
        request = client_pb2.ListAttemptsRequest(execution_id=execution_id)
        found = self._call(self._stub.ListAttempts, request, retry=True).attempts
        return [attempt_from_pb(a) for a in found]

    def rerun(
        self, execution_id: str, *, from_step: str | None = None, payload: Any = ...,
    ) -> Any:
        """A new execution of a finished one's task, linked to it (`rerun_of`). With
        `from_step`, the steps recorded before that step are copied, so only it and the later
        ones run; `payload` replaces the original's. Returns the new Execution."""
        request = client_pb2.RerunExecutionRequest(
            execution_id=execution_id, from_step=from_step or ""
        )
        if payload is not ...:
            request.payload_json = dumps(payload)
        return self._execution(self._call(self._stub.RerunExecution, request))

    def retry(self, execution_id: str) -> Any:
        """Run a failed or cancelled execution again in place: its recorded steps are kept,
        its attempts start over. Returns the Execution (pending)."""
        request = client_pb2.RetryExecutionRequest(execution_id=execution_id)
        return self._execution(self._call(self._stub.RetryExecution, request))

    def bulk(
        self,
        action: str,
        *,
        task: str | None = None,
        state: str | Sequence[str] | None = None,
        queue: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        dry_run: bool = False,
        all: bool = False,
    ) -> BulkResult:
        """Cancel, retry or delete every execution matching the filter, in bounded batches.

        `dry_run` only counts. Deleting with an empty filter needs `all=True`."""
        if action not in _BULK_ACTIONS:
            raise InvalidArgument(f"action: must be one of {', '.join(_BULK_ACTIONS)}")
        f = client_pb2.ExecutionFilter(task=task or "", states=states_to_pb(state),
                                       queue=queue or "")
        for name, when in (("created_after", created_after), ("created_before", created_before)):
            if when is not None:
                if when.tzinfo is None:
                    raise InvalidArgument(f"{name}: needs a timezone-aware datetime")
                getattr(f, name).FromDatetime(when.astimezone(UTC))
        request = client_pb2.BulkExecutionsRequest(
            action=_BULK_ACTIONS[action], filter=f, dry_run=dry_run, all=all
        )
        found = self._call(self._stub.BulkExecutions, request, timeout=BULK_TIMEOUT)
        return BulkResult(found.matched, found.affected)

    def tasks(self) -> builtins.list[TaskInfo]:
        """Registered tasks, with the workers serving them now."""
        found = self._call(self._stub.ListTasks, client_pb2.ListTasksRequest(), retry=True)
        return [
            TaskInfo(
                t.name, list(t.workers), _time(t, "last_seen"), t.stale,
                {"succeeded": t.retention_succeeded_seconds,
                 "failed": t.retention_failed_seconds,
                 "cancelled": t.retention_cancelled_seconds},
                None if t.redact_after_seconds < 0 else t.redact_after_seconds,
            )
            for t in found.tasks
        ]

    def delete_task(self, name: str) -> int:
        """Remove a task nobody serves and no execution refers to; returns how many of its
        schedules went with it."""
        request = client_pb2.DeleteTaskRequest(name=name)
        return self._call(self._stub.DeleteTask, request).deleted_schedules
