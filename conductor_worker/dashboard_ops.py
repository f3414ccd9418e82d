"""The client's calls for dashboards and other browsing UIs: one page of executions at a
time (with its cursor), filtered by time and payload too, and finished executions per task
over the last hour. Operations that Client and AsyncClient run (operations.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import Message

from conductor.v1 import client_pb2

from .calls import Call, Operation
from .encoding import states_to_pb
from .errors import InvalidArgument
from .records import Execution, execution_from_pb


@dataclass(frozen=True)
class ExecutionPage:
    """One page of executions, newest first; pass `next_page_token` for the next one
    (empty on the last page)."""

    executions: list[Execution]
    next_page_token: str


@dataclass(frozen=True)
class TaskActivity:
    """What one task finished in a window, per bucket, oldest bucket first."""

    task: str
    succeeded: list[int]
    failed: list[int]
    cancelled: list[int]


@dataclass(frozen=True)
class Activity:
    """Finished executions per task over a window that ends at `window_end`."""

    window_end: datetime
    window_seconds: int
    buckets: int
    tasks: list[TaskActivity]


def page(
    task: str | None = None,
    *,
    state: str | Sequence[str] | None = None,
    queue: str | None = None,
    parent_id: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    payload: Mapping[str, Any] | None = None,
    page_size: int = 50,
    page_token: str = "",
) -> Operation[ExecutionPage]:
    """One page of executions, newest first. `payload` filters by equality of dotted paths
    into the payload ({"customer.id": 7}); the times bound created_at."""
    request = client_pb2.ListExecutionsRequest(
        task=task or "", states=states_to_pb(state), queue=queue or "",
        parent_id=parent_id or "", page_size=page_size, page_token=page_token,
        payload_match_json=match_json(payload),
    )
    set_times(request, created_after, created_before)
    found = yield Call("ListExecutions", request, retry=True)
    return ExecutionPage([execution_from_pb(e) for e in found.executions], found.next_page_token)


def activity(window_seconds: int = 3600, buckets: int = 12) -> Operation[Activity]:
    """Per task: executions that succeeded, failed and were cancelled in the last
    `window_seconds`, counted in `buckets` equal buckets (oldest first)."""
    request = client_pb2.ListTaskActivityRequest(window_seconds=window_seconds, buckets=buckets)
    found = yield Call("ListTaskActivity", request, retry=True)
    return Activity(
        found.window_end.ToDatetime(UTC), found.window_seconds, found.buckets,
        [TaskActivity(t.task, list(t.succeeded), list(t.failed), list(t.cancelled))
         for t in found.tasks],
    )


def match_json(payload: Mapping[str, Any] | None) -> str:
    """A payload filter as the API's JSON text ("" for none)."""
    if not payload:
        return ""
    try:
        return json.dumps(dict(payload), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"payload: not JSON-serialisable: {exc}") from exc


def set_times(message: Message, after: datetime | None, before: datetime | None) -> None:
    """Set a request's or filter's created_after / created_before."""
    for name, when in (("created_after", after), ("created_before", before)):
        if when is not None:
            if when.tzinfo is None:
                raise InvalidArgument(f"{name}: needs a timezone-aware datetime")
            getattr(message, name).FromDatetime(when.astimezone(UTC))
