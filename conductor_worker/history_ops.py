"""The client's calls for runs kept over months (attempts, rerun and retry, bulk operations
by filter, the task registry): operations that Client and AsyncClient run (operations.py)."""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from conductor.v1 import client_pb2

from .calls import Call, Operation
from .dashboard_ops import match_json, set_times
from .encoding import dumps, states_to_pb
from .errors import InvalidArgument
from .history import Attempt, BulkResult, TaskInfo, attempt_from_pb, time_of
from .records import Execution, execution_from_pb

#: seconds a bulk call may take (it works through every matching execution)
BULK_TIMEOUT = 600.0

_BULK_ACTIONS = {
    "cancel": client_pb2.BULK_ACTION_CANCEL,
    "retry": client_pb2.BULK_ACTION_RETRY,
    "delete": client_pb2.BULK_ACTION_DELETE,
}


def attempts(execution_id: str) -> Operation[builtins.list[Attempt]]:
    """Every run of an execution, oldest first: failures, releases, the one running."""
    request = client_pb2.ListAttemptsRequest(execution_id=execution_id)
    found = yield Call("ListAttempts", request, retry=True)
    return [attempt_from_pb(a) for a in found.attempts]


def rerun(execution_id: str, *, from_step: str | None = None, payload: Any = ...) -> (
    Operation[Execution]
):
    """A new execution of a finished one's task, linked to it (`rerun_of`). With
    `from_step`, the steps recorded before that step are copied, so only it and the later
    ones run; `payload` replaces the original's. Returns the new Execution."""
    request = client_pb2.RerunExecutionRequest(
        execution_id=execution_id, from_step=from_step or ""
    )
    if payload is not ...:
        request.payload_json = dumps(payload)
    return execution_from_pb((yield Call("RerunExecution", request)))


def retry(execution_id: str) -> Operation[Execution]:
    """Run a failed or cancelled execution again in place: its recorded steps are kept,
    its attempts start over. Returns the Execution (pending)."""
    request = client_pb2.RetryExecutionRequest(execution_id=execution_id)
    return execution_from_pb((yield Call("RetryExecution", request)))


def bulk(
    action: str,
    *,
    task: str | None = None,
    state: str | Sequence[str] | None = None,
    queue: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    parent_id: str | None = None,
    payload: Mapping[str, Any] | None = None,
    dry_run: bool = False,
    all: bool = False,
) -> Operation[BulkResult]:
    """Cancel, retry or delete every execution matching the filter, in bounded batches
    (`parent_id`: the children of that execution; `payload`: dotted paths and the values
    they must equal, as for `page`).

    `dry_run` only counts. Deleting with an empty filter needs `all=True`."""
    if action not in _BULK_ACTIONS:
        raise InvalidArgument(f"action: must be one of {', '.join(_BULK_ACTIONS)}")
    f = client_pb2.ExecutionFilter(task=task or "", states=states_to_pb(state),
                                   queue=queue or "", parent_id=parent_id or "",
                                   payload_match_json=match_json(payload))
    set_times(f, created_after, created_before)
    request = client_pb2.BulkExecutionsRequest(
        action=_BULK_ACTIONS[action], filter=f, dry_run=dry_run, all=all
    )
    found = yield Call("BulkExecutions", request, budget=BULK_TIMEOUT)
    return BulkResult(found.matched, found.affected)


def tasks() -> Operation[builtins.list[TaskInfo]]:
    """Registered tasks, with the workers serving them now."""
    found = yield Call("ListTasks", client_pb2.ListTasksRequest(), retry=True)
    return [
        TaskInfo(
            t.name, list(t.workers), time_of(t, "last_seen"), t.stale,
            {"succeeded": t.retention_succeeded_seconds,
             "failed": t.retention_failed_seconds,
             "cancelled": t.retention_cancelled_seconds},
            None if t.redact_after_seconds < 0 else t.redact_after_seconds,
        )
        for t in found.tasks
    ]


def delete_task(name: str) -> Operation[int]:
    """Remove a task nobody serves and no execution refers to; returns how many of its
    schedules went with it."""
    found = yield Call("DeleteTask", client_pb2.DeleteTaskRequest(name=name))
    return int(found.deleted_schedules)
