"""The workflow calls of the Python clients (operations that Client and AsyncClient run):
emit, signal, and the wait call that ctx.invoke / ctx.wait_for_* make through the worker."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from conductor.v1 import client_pb2

from .calls import Call, Operation
from .errors import InvalidArgument

_KINDS = {
    "children": client_pb2.WAIT_KIND_CHILDREN,
    "signal": client_pb2.WAIT_KIND_SIGNAL,
    "event": client_pb2.WAIT_KIND_EVENT,
}


def emit(event: str, payload: Any = None, *, dedupe_key: str | None = None) -> (
    Operation[list[str]]
):
    """Emit an event: one execution per task subscribed to it (@task(on=...)) whose filter
    matches, and the waits for it (ctx.wait_for_event) that match are resolved. Returns the
    ids of the executions created. With `dedupe_key`, an event emitted before with that key
    makes this one create nothing (and the call is retried on UNAVAILABLE)."""
    request = client_pb2.EmitRequest(
        event=event, payload_json=_json(payload, "payload"), dedupe_key=dedupe_key or ""
    )
    answer = yield Call("Emit", request, retry=dedupe_key is not None)
    return list(answer.execution_ids)


def signal(execution_id: str, name: str, payload: Any = None) -> Operation[None]:
    """Send a signal to an unfinished execution (ctx.wait_for_signal(name) returns its
    payload); kept when it does not wait yet. A finished execution: FailedPrecondition."""
    request = client_pb2.SignalRequest(
        execution_id=execution_id, name=name, payload_json=_json(payload, "payload")
    )
    yield Call("Signal", request)


def workflow_wait(
    execution_id: str,
    lease_token: str,
    step: str,
    kind: str,
    *,
    name: str = "",
    match: dict[str, Any] | None = None,
    timeout: float | None = None,
    task: str = "",
    payloads_json: Sequence[str] = (),
    priority: int = 0,
    queue: str | None = None,
) -> Operation[tuple[str | None, list[str]]]:
    """For the worker (ctx.invoke and the waits): begin or look at a durable wait. Returns
    the step's recorded outcome (JSON) once it is over, else None, and the children's ids.
    Safe to repeat (retried on UNAVAILABLE)."""
    request = client_pb2.WorkflowWaitRequest(
        execution_id=execution_id,
        lease_token=lease_token,
        step=step,
        kind=_KINDS[kind],
        name=name,
        match_json=_json(match, "match") if match else "",
        timeout_seconds=timeout or 0.0,
        task=task,
        payloads_json=list(payloads_json),
        options=client_pb2.InvokeOptions(priority=priority, queue=queue or ""),
    )
    answer = yield Call("WorkflowWait", request, retry=True)
    return (None if answer.waiting else answer.result_json), list(answer.execution_ids)


def _json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"{what}: not JSON-serialisable: {exc}") from exc
