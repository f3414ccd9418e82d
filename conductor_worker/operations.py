"""The client API's operations, written once and free of I/O (Client and AsyncClient run them).

Each operation is a generator: it builds requests and yields them as `Call`s, is sent each
call's response (or has the call's error thrown into it), converts what came back and returns
the result. `Client` drives an operation with blocking calls, `AsyncClient` with awaited ones,
so both have the same methods, arguments, conversions, errors and retries by construction.
Streaming operations (`iter`) also yield the items they produce, between calls.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Generator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from conductor.v1 import client_pb2

from . import durations, tracing, typed
from .calls import Call, Operation
from .encoding import dumps, states_to_pb
from .errors import InvalidArgument, ScheduleNotFound
from .records import (
    MISSED,
    CoordinatorStatus,
    Execution,
    LogEntry,
    QueueInfo,
    Schedule,
    Step,
    WorkerInfo,
    execution_from_pb,
    queue_from_pb,
    schedule_from_pb,
    step_from_pb,
    worker_from_pb,
)
from .task import Task

R = TypeVar("R")
#: WaitExecution waits this long per call at most (a long wait is several calls)
WAIT_CHUNK = 60.0


#: TaskRef: a task's name or the @task object itself
TaskRef = str | Task[..., Any]


def _name(task: TaskRef) -> str:
    return task.name if isinstance(task, Task) else task


# -- invoking ---------------------------------------------------------------------------


def invoke(
    task: TaskRef,
    payload: Any = None,
    *,
    run_at: datetime | None = None,
    delay: float | None = None,
    priority: int = 0,
    dedupe_key: str | None = None,
    queue: str | None = None,
    max_attempts: int | None = None,
    request_id: str | None = None,
    timeout: float | str | None = None,
    concurrency_key: str | None = None,
    debounce: float | None = None,
    throttle: float | None = None,
) -> Operation[str]:
    """Create an execution of `task` (its name or the @task object); returns its id (with
    dedupe_key, maybe an old one's). A pydantic model as payload is sent as its JSON form.
    `timeout` (seconds or "90s", "5m" ...) overrides the task's execution timeout.

    The call carries `request_id` (default: a new UUID), so retrying it on UNAVAILABLE
    never creates a second execution; pass your own to repeat a call safely later (the
    coordinator remembers it for 24 hours).

    Flow control (docs/flow-control.md): `queue` routes it (default: the task's queue);
    `concurrency_key` is its key for per-key limits (default: the task's key field). With
    `dedupe_key`, `debounce=s` runs it once `s` seconds after the last invoke with that key,
    with the newest payload; `throttle=s` keeps only the first invoke per key per `s`
    seconds (the others return that execution's id; `invoke_info` says whether it was
    created)."""
    info = yield from invoke_info(
        task, payload, run_at=run_at, delay=delay, priority=priority, dedupe_key=dedupe_key,
        queue=queue, max_attempts=max_attempts, request_id=request_id,
        concurrency_key=concurrency_key, debounce=debounce, throttle=throttle,
        timeout=timeout,
    )
    return info.execution_id


@dataclasses.dataclass(frozen=True)
class Invoked:
    """What an invoke did: the execution's id, and whether this call created it (False:
    a dedupe key's holder, a debounced execution pushed back, or a throttled invoke)."""

    execution_id: str
    created: bool


def invoke_info(
    task: TaskRef,
    payload: Any = None,
    *,
    run_at: datetime | None = None,
    delay: float | None = None,
    priority: int = 0,
    dedupe_key: str | None = None,
    queue: str | None = None,
    max_attempts: int | None = None,
    request_id: str | None = None,
    concurrency_key: str | None = None,
    debounce: float | None = None,
    throttle: float | None = None,
    timeout: float | str | None = None,
) -> Operation[Invoked]:
    """`invoke`, answering with the id and whether this call created the execution."""
    options = _options(run_at, delay, priority, dedupe_key, queue, max_attempts, timeout)
    options.concurrency_key = concurrency_key or ""
    options.debounce_seconds = debounce or 0.0
    options.throttle_seconds = throttle or 0.0
    request = client_pb2.InvokeRequest(
        task=_name(task),
        payload_json=dumps(payload),
        options=options,
        request_id=request_id or str(uuid.uuid4()),
    )
    response = yield from _traced_invoke("Invoke", request)
    return Invoked(str(response.execution_id), response.created)


def invoke_batch(
    task: TaskRef,
    payloads: Sequence[Any],
    *,
    run_at: datetime | None = None,
    delay: float | None = None,
    priority: int = 0,
    queue: str | None = None,
    max_attempts: int | None = None,
    request_id: str | None = None,
    timeout: float | str | None = None,
    concurrency_key: str | None = None,
    dedupe_keys: Sequence[str | None] | None = None,
) -> Operation[list[str]]:
    """Create one execution per payload in one transaction; returns their ids in order.
    `concurrency_key` gives them all one key (default: each payload's key field).
    `dedupe_keys` gives each payload its dedupe key (one per payload, None for none): an
    item whose key is held by an unfinished execution, or by an earlier item, answers that
    execution's id and creates nothing (`invoke_batch_info` tells which).

    Retried on UNAVAILABLE under one `request_id`, as `invoke` is."""
    request = _batch_request(task, payloads, run_at, delay, priority, queue, max_attempts,
                             request_id, timeout, concurrency_key, dedupe_keys)
    response = yield from _traced_invoke("InvokeBatch", request)
    # the ids as they came: a 100,000 batch builds no object per item (S4)
    return list(response.execution_ids)


def invoke_batch_info(
    task: TaskRef,
    payloads: Sequence[Any],
    *,
    run_at: datetime | None = None,
    delay: float | None = None,
    priority: int = 0,
    queue: str | None = None,
    max_attempts: int | None = None,
    request_id: str | None = None,
    timeout: float | str | None = None,
    concurrency_key: str | None = None,
    dedupe_keys: Sequence[str | None] | None = None,
) -> Operation[list[Invoked]]:
    """`invoke_batch`, answering per payload with the id and whether this call created it."""
    request = _batch_request(task, payloads, run_at, delay, priority, queue, max_attempts,
                             request_id, timeout, concurrency_key, dedupe_keys)
    response = yield from _traced_invoke("InvokeBatch", request)
    ids = list(response.execution_ids)
    # no flags: a batch without keys (or an older coordinator) created every one
    created = list(response.created) if len(response.created) == len(ids) else [True] * len(ids)
    return [Invoked(str(i), c) for i, c in zip(ids, created, strict=True)]


def _batch_request(
    task: TaskRef, payloads: Sequence[Any], run_at: datetime | None, delay: float | None,
    priority: int, queue: str | None, max_attempts: int | None, request_id: str | None,
    timeout: float | str | None, concurrency_key: str | None,
    dedupe_keys: Sequence[str | None] | None,
) -> client_pb2.InvokeBatchRequest:
    if dedupe_keys is not None and len(dedupe_keys) != len(payloads):
        raise InvalidArgument(f"dedupe_keys: needs one per payload ({len(payloads)}), got"
                              f" {len(dedupe_keys)}")
    options = _options(run_at, delay, priority, None, queue, max_attempts, timeout)
    options.concurrency_key = concurrency_key or ""
    return client_pb2.InvokeBatchRequest(
        task=_name(task),
        payloads_json=[dumps(p) for p in payloads],
        options=options,
        request_id=request_id or str(uuid.uuid4()),
        dedupe_keys=[k or "" for k in dedupe_keys] if dedupe_keys is not None else [],
    )


def _traced_invoke(
    method: str, request: client_pb2.InvokeRequest | client_pb2.InvokeBatchRequest
) -> Operation[Any]:
    """The invoke call, in a conductor.invoke span when OpenTelemetry is installed; its
    traceparent goes with the request (see tracing.py)."""
    span = tracing.start_invoke(request.task)
    request.trace_context = tracing.traceparent(span)
    try:
        response = yield Call(method, request, retry=True)
    except BaseException as exc:
        tracing.end_invoke(span, [], exc)
        raise
    if span is not None:  # the ids only for a span: a batch's 100,000 are not copied for none
        ids = [response.execution_id] if method == "Invoke" else list(response.execution_ids)
        tracing.end_invoke(span, ids, None)
    return response


# -- reading ----------------------------------------------------------------------------


def get(execution_id: str, *, result_type: Any = None) -> Operation[Execution]:
    """The execution as stored now (`result_type`: as for `wait`)."""
    request = client_pb2.GetExecutionRequest(execution_id=execution_id)
    found = yield Call("GetExecution", request, retry=True)
    return _typed(execution_from_pb(found), result_type)


def wait(
    execution_id: str, timeout: float | None = None, *, result_type: Any = None
) -> Operation[Execution]:
    """Wait until the execution is finished; TimeoutError after `timeout` seconds.

    `result_type` (a type pydantic can validate, such as a model class, or a @task whose
    handler has a return annotation) parses a succeeded execution's `result` into it.
    Rides out UNAVAILABLE (retried until the timeout; without one, until an outage has
    lasted the client's timeout)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = WAIT_CHUNK if deadline is None else max(0.0, deadline - time.monotonic())
        chunk = min(left, WAIT_CHUNK)
        request = client_pb2.WaitExecutionRequest(execution_id=execution_id, timeout_seconds=chunk)
        found = yield Call(
            "WaitExecution",
            request,
            retry=True,
            budget=None if deadline is None else left,
            per_try=chunk + 10,
        )
        execution = execution_from_pb(found)
        if execution.finished:
            return _typed(execution, result_type)
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"execution {execution_id} still {execution.state} after {timeout}s")


def cancel(execution_id: str) -> Operation[Execution]:
    """Cancel: a pending execution at once, a running one at its next step/checkpoint."""
    request = client_pb2.CancelExecutionRequest(execution_id=execution_id)
    return execution_from_pb((yield Call("CancelExecution", request)))


def iter_executions(
    task: TaskRef | None = None,
    *,
    state: str | Sequence[str] | None = None,
    queue: str | None = None,
    limit: int | None = None,
    parent_id: str | None = None,
) -> Generator[Call | Execution, Any, None]:
    """Executions, newest first, filtered (`parent_id`: the children of that execution),
    read page by page as they are consumed."""
    states = states_to_pb(state)
    token, seen = "", 0
    while True:
        size = 1000 if limit is None else max(1, min(1000, limit - seen))
        request = client_pb2.ListExecutionsRequest(
            task=_name(task) if task is not None else "",
            states=states,
            queue=queue or "",
            page_size=size,
            page_token=token,
            parent_id=parent_id or "",
        )
        page = yield Call("ListExecutions", request, retry=True)
        for e in page.executions:
            yield execution_from_pb(e)
            seen += 1
            if limit is not None and seen >= limit:
                return
        token = page.next_page_token
        if not token:
            return


def list_executions(
    task: TaskRef | None = None,
    *,
    state: str | Sequence[str] | None = None,
    queue: str | None = None,
    limit: int | None = 100,
    parent_id: str | None = None,
) -> Operation[list[Execution]]:
    """Executions, newest first, filtered (`parent_id`: the children of that execution);
    `limit=None` reads every page."""
    found: list[Execution] = []
    pages = iter_executions(task, state=state, queue=queue, limit=limit, parent_id=parent_id)
    reply: Any = None
    while True:
        try:
            item = pages.send(reply)
        except StopIteration:
            return found
        if isinstance(item, Call):
            reply = yield item
        else:
            found.append(item)
            reply = None


# -- schedules --------------------------------------------------------------------------


def schedule(
    task: TaskRef,
    name: str,
    cron: str,
    *,
    payload: Any = None,
    timezone: str | None = None,
    missed: str = "latest",
    missed_limit: int = 1,
) -> Operation[Schedule]:
    """Create or replace the cron schedule (task, name).

    `missed` decides what happens to fires missed while no coordinator ran: "latest"
    (run the most recent once), "skip" (run none), "all" (run up to `missed_limit`)."""
    if missed not in MISSED:
        raise InvalidArgument(f"missed: must be one of {sorted(MISSED)}, got {missed!r}")
    request = client_pb2.PutScheduleRequest(
        schedule=client_pb2.Schedule(
            task=_name(task),
            name=name,
            cron=cron,
            timezone=timezone or "",
            payload_json=dumps(payload),
            missed=MISSED[missed],
            missed_limit=missed_limit,
        )
    )
    return schedule_from_pb((yield Call("PutSchedule", request, retry=True)))


def unschedule(task: TaskRef, name: str, *, missing_ok: bool = True) -> Operation[int]:
    """Delete a schedule and cancel its pending fires; returns how many were cancelled."""
    request = client_pb2.DeleteScheduleRequest(task=_name(task), name=name)
    try:
        response = yield Call("DeleteSchedule", request)
    except ScheduleNotFound:
        if missing_ok:
            return 0
        raise
    return int(response.cancelled_fires)


def schedules(task: TaskRef | None = None) -> Operation[list[Schedule]]:
    """Schedules, by task and name."""
    request = client_pb2.ListSchedulesRequest(task=_name(task) if task is not None else "")
    response = yield Call("ListSchedules", request, retry=True)
    return [schedule_from_pb(s) for s in response.schedules]


# -- inspection -------------------------------------------------------------------------


def steps(execution_id: str) -> Operation[list[Step]]:
    """The recorded steps of an execution, oldest first."""
    request = client_pb2.ListStepsRequest(execution_id=execution_id)
    response = yield Call("ListSteps", request, retry=True)
    return [step_from_pb(s) for s in response.steps]


def workers() -> Operation[list[WorkerInfo]]:
    """Workers connected now, to any coordinator."""
    response = yield Call("ListWorkers", client_pb2.ListWorkersRequest(), retry=True)
    return [worker_from_pb(w) for w in response.workers]


def status() -> Operation[CoordinatorStatus]:
    """The coordinator's version, database and whether that answers now."""
    found = yield Call("GetStatus", client_pb2.GetStatusRequest(), retry=True)
    return CoordinatorStatus(found.version, found.name, found.database, found.data_dir or None,
                             found.database_ok, found.database_error)


#: log lines the coordinator returns per ListLogs call
LOG_PAGE = 1000


def logs(execution_id: str, after: int = 0) -> Operation[list[LogEntry]]:
    """The lines the execution's handler logged through ctx.logger, oldest first (every
    page); `after`: only lines after that sequence number (to follow new ones)."""
    lines: list[LogEntry] = []
    while True:
        request = client_pb2.ListLogsRequest(execution_id=execution_id, after=after)
        page = (yield Call("ListLogs", request, retry=True)).lines
        lines += [LogEntry(x.sequence, x.attempt, x.level, x.message,
                           x.logged_at.ToDatetime(UTC)) for x in page]
        if len(page) < LOG_PAGE:
            return lines
        after = page[-1].sequence


def queues() -> Operation[list[QueueInfo]]:
    """Per task: ready, waiting and running executions and the oldest ready age."""
    response = yield Call("ListQueues", client_pb2.ListQueuesRequest(), retry=True)
    return [queue_from_pb(q) for q in response.queues]


# -- conversions ------------------------------------------------------------------------


def _typed(execution: Execution, result_type: Any) -> Execution:
    """The execution with its result parsed into `result_type` (when it succeeded)."""
    if result_type is None or execution.state != "succeeded":
        return execution
    kind = result_type.result_type if isinstance(result_type, Task) else result_type
    if kind is None:
        raise InvalidArgument(f"result_type: task {result_type.name!r} has no return annotation")
    return dataclasses.replace(execution, result=typed.parse(kind, execution.result))


def _timeout(timeout: float | str | None) -> float:
    """An invoke's timeout override in seconds (0: the task's)."""
    if timeout is None:
        return 0.0
    try:
        seconds = durations.seconds(timeout)
    except ValueError as exc:
        raise InvalidArgument(f"timeout: {exc}") from None
    if seconds <= 0:
        raise InvalidArgument(f"timeout: must be > 0 seconds, got {timeout!r}")
    return seconds


def _options(
    run_at: datetime | None,
    delay: float | None,
    priority: int,
    dedupe_key: str | None,
    queue: str | None,
    max_attempts: int | None,
    timeout: float | str | None = None,
) -> client_pb2.InvokeOptions:
    options = client_pb2.InvokeOptions(
        delay_seconds=delay or 0.0,
        priority=priority,
        dedupe_key=dedupe_key or "",
        queue=queue or "",
        max_attempts=max_attempts or 0,
        timeout_seconds=_timeout(timeout),
    )
    if run_at is not None:
        if run_at.tzinfo is None:
            raise InvalidArgument("run_at: needs a timezone-aware datetime")
        options.run_at.FromDatetime(run_at.astimezone(UTC))
    return options
