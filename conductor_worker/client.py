"""The Python client of the public API (`conductor.v1.ConductorService`)."""

from __future__ import annotations

import builtins
import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from conductor.v1 import client_pb2, client_pb2_grpc, common_pb2

from .connection import Connection
from .encoding import STATE_FROM_PB, dumps, states_to_pb
from .errors import (
    ConductorError,
    ExecutionNotFound,
    FailedPrecondition,
    InvalidArgument,
    ScheduleNotFound,
    TaskNotFound,
    Unauthenticated,
)
from .history import Attempt, ErrorInfo, HistoryCalls, attempt_from_pb
from .retrying import Retrying, unavailable
from .workflow_client import WorkflowClient

FINISHED = frozenset(("succeeded", "failed", "cancelled"))

T = TypeVar("T")


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
        return data


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


def _translate(exc: grpc.RpcError) -> Exception:
    code = exc.code() if isinstance(exc, grpc.Call) else None
    details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
    if code == grpc.StatusCode.NOT_FOUND:
        text = details or ""
        if "no task named" in text:
            return TaskNotFound(text)
        if "no schedule" in text:
            return ScheduleNotFound(text)
        return ExecutionNotFound(text)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument(details)
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return FailedPrecondition(details)
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return Unauthenticated(details)
    return exc


class Client(WorkflowClient, HistoryCalls):
    """A connection to a coordinator. Thread-safe; close it (or use `with`) when done."""

    def __init__(
        self,
        address: str | None = None,
        *,
        timeout: float = 30.0,
        token: str | None = None,
        tls_ca: str | Path | None = None,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
        connection: Connection | None = None,
    ) -> None:
        """`address` defaults to $CONDUCTOR_SERVER; `token` to $CONDUCTOR_AUTH_TOKEN; TLS is
        on when a CA or client certificate is given (or $CONDUCTOR_TLS_CA is set)."""
        self.connection = connection or Connection.resolve(
            address, token=token, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key
        )
        self.address = self.connection.address
        self.timeout = timeout
        self._channel = self.connection.channel()
        self._metadata = self.connection.metadata
        self._stub = client_pb2_grpc.ConductorServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def _execution(self, pb: common_pb2.Execution) -> Execution:
        return execution_from_pb(pb)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(
        self,
        method: Callable[..., T],
        request: Any,
        timeout: float | None = None,
        *,
        retry: bool = False,
    ) -> T:
        """One call; with `retry`, repeated on UNAVAILABLE (see retrying.py) for as long as
        its timeout allows, each try getting the time left."""
        budget = Retrying(time.monotonic() + (timeout or self.timeout))
        while True:
            try:
                return method(request, timeout=budget.left(), metadata=self._metadata)
            except grpc.RpcError as exc:
                if not (retry and unavailable(exc) and budget.pause()):
                    raise _translate(exc) from None

    # -- invoking -----------------------------------------------------------------------

    def invoke(
        self,
        task: str,
        payload: Any = None,
        *,
        run_at: datetime | None = None,
        delay: float | None = None,
        priority: int = 0,
        dedupe_key: str | None = None,
        queue: str | None = None,
        max_attempts: int | None = None,
        request_id: str | None = None,
    ) -> str:
        """Create an execution of `task`; returns its id (with dedupe_key, maybe an old one).

        The call carries `request_id` (default: a new UUID), so retrying it on UNAVAILABLE
        never creates a second execution; pass your own to repeat a call safely later (the
        coordinator remembers it for 24 hours)."""
        request = client_pb2.InvokeRequest(
            task=task,
            payload_json=dumps(payload),
            options=_options(run_at, delay, priority, dedupe_key, queue, max_attempts),
            request_id=request_id or str(uuid.uuid4()),
        )
        return self._call(self._stub.Invoke, request, retry=True).execution_id

    def invoke_batch(
        self,
        task: str,
        payloads: Sequence[Any],
        *,
        run_at: datetime | None = None,
        delay: float | None = None,
        priority: int = 0,
        queue: str | None = None,
        max_attempts: int | None = None,
        request_id: str | None = None,
    ) -> list[str]:
        """Create one execution per payload in one transaction; returns their ids in order.

        Retried on UNAVAILABLE under one `request_id`, as `invoke` is."""
        request = client_pb2.InvokeBatchRequest(
            task=task,
            payloads_json=[dumps(p) for p in payloads],
            options=_options(run_at, delay, priority, None, queue, max_attempts),
            request_id=request_id or str(uuid.uuid4()),
        )
        return list(self._call(self._stub.InvokeBatch, request, retry=True).execution_ids)

    # -- reading ------------------------------------------------------------------------

    def get(self, execution_id: str) -> Execution:
        request = client_pb2.GetExecutionRequest(execution_id=execution_id)
        return execution_from_pb(self._call(self._stub.GetExecution, request, retry=True))

    def wait(self, execution_id: str, timeout: float | None = None) -> Execution:
        """Block until the execution is finished; TimeoutError after `timeout` seconds.

        Rides out UNAVAILABLE (retried until the timeout; without one, until an outage has
        lasted the client's timeout)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        outage: Retrying | None = None
        while True:
            left = 60.0 if deadline is None else max(0.0, deadline - time.monotonic())
            chunk = min(left, 60.0)
            request = client_pb2.WaitExecutionRequest(
                execution_id=execution_id, timeout_seconds=chunk
            )
            try:
                found = self._stub.WaitExecution(
                    request, timeout=chunk + 10, metadata=self._metadata
                )
            except grpc.RpcError as exc:
                if not unavailable(exc):
                    raise _translate(exc) from None
                outage = outage or Retrying(
                    deadline if deadline is not None else time.monotonic() + self.timeout
                )
                if not outage.pause():
                    raise _translate(exc) from None
                continue
            outage = None
            execution = execution_from_pb(found)
            if execution.finished:
                return execution
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"execution {execution_id} still {execution.state} after {timeout}s"
                )

    def cancel(self, execution_id: str) -> Execution:
        """Cancel: a pending execution at once, a running one at its next step/checkpoint."""
        request = client_pb2.CancelExecutionRequest(execution_id=execution_id)
        return execution_from_pb(self._call(self._stub.CancelExecution, request))

    def list(
        self,
        task: str | None = None,
        *,
        state: str | Sequence[str] | None = None,
        queue: str | None = None,
        limit: int | None = 100,
        parent_id: str | None = None,
    ) -> list[Execution]:
        """Executions, newest first, filtered (`parent_id`: the children of that
        execution); `limit=None` reads every page."""
        return list(self.iter(task, state=state, queue=queue, limit=limit, parent_id=parent_id))

    def iter(
        self,
        task: str | None = None,
        *,
        state: str | Sequence[str] | None = None,
        queue: str | None = None,
        limit: int | None = None,
        parent_id: str | None = None,
    ) -> Iterator[Execution]:
        states = states_to_pb(state)
        token, seen = "", 0
        while True:
            size = 1000 if limit is None else max(1, min(1000, limit - seen))
            request = client_pb2.ListExecutionsRequest(
                task=task or "",
                states=states,
                queue=queue or "",
                page_size=size,
                page_token=token,
                parent_id=parent_id or "",
            )
            page = self._call(self._stub.ListExecutions, request, retry=True)
            for e in page.executions:
                yield execution_from_pb(e)
                seen += 1
                if limit is not None and seen >= limit:
                    return
            token = page.next_page_token
            if not token:
                return


    # -- schedules ----------------------------------------------------------------------

    def schedule(
        self,
        task: str,
        name: str,
        cron: str,
        *,
        payload: Any = None,
        timezone: str | None = None,
        missed: str = "latest",
        missed_limit: int = 1,
    ) -> Schedule:
        """Create or replace the cron schedule (task, name).

        `missed` decides what happens to fires missed while no coordinator ran: "latest"
        (run the most recent once), "skip" (run none), "all" (run up to `missed_limit`)."""
        if missed not in MISSED:
            raise InvalidArgument(f"missed: must be one of {sorted(MISSED)}, got {missed!r}")
        request = client_pb2.PutScheduleRequest(
            schedule=client_pb2.Schedule(
                task=task,
                name=name,
                cron=cron,
                timezone=timezone or "",
                payload_json=dumps(payload),
                missed=MISSED[missed],
                missed_limit=missed_limit,
            )
        )
        return schedule_from_pb(self._call(self._stub.PutSchedule, request, retry=True))

    def unschedule(self, task: str, name: str, *, missing_ok: bool = True) -> int:
        """Delete a schedule and cancel its pending fires; returns how many were cancelled."""
        request = client_pb2.DeleteScheduleRequest(task=task, name=name)
        try:
            return self._call(self._stub.DeleteSchedule, request).cancelled_fires
        except ScheduleNotFound:
            if missing_ok:
                return 0
            raise

    def schedules(self, task: str | None = None) -> builtins.list[Schedule]:
        """Schedules, by task and name."""
        request = client_pb2.ListSchedulesRequest(task=task or "")
        found = self._call(self._stub.ListSchedules, request, retry=True).schedules
        return [schedule_from_pb(s) for s in found]


    # -- inspection ---------------------------------------------------------------------

    def steps(self, execution_id: str) -> builtins.list[Step]:
        """The recorded steps of an execution, oldest first."""
        request = client_pb2.ListStepsRequest(execution_id=execution_id)
        return [
            Step(s.name, json.loads(s.result_json), s.saved_at.ToDatetime(UTC))
            for s in self._call(self._stub.ListSteps, request, retry=True).steps
        ]

    def status(self) -> CoordinatorStatus:
        """The coordinator's version, database and whether that answers now."""
        found = self._call(self._stub.GetStatus, client_pb2.GetStatusRequest(), retry=True)
        return CoordinatorStatus(found.version, found.name, found.database,
                                 found.data_dir or None, found.database_ok,
                                 found.database_error)

    def logs(self, execution_id: str, after: int = 0) -> builtins.list[LogEntry]:
        """The lines the execution's handler logged through ctx.logger, oldest first (every
        page); `after`: only lines after that sequence number (to follow new ones)."""
        lines: builtins.list[LogEntry] = []
        while True:
            request = client_pb2.ListLogsRequest(execution_id=execution_id, after=after)
            page = self._call(self._stub.ListLogs, request, retry=True).lines
            lines += [LogEntry(x.sequence, x.attempt, x.level, x.message,
                               x.logged_at.ToDatetime(UTC)) for x in page]
            if len(page) < LOG_PAGE:
                return lines
            after = page[-1].sequence

    def workers(self) -> builtins.list[WorkerInfo]:
        """Workers connected now, to any coordinator."""
        request = client_pb2.ListWorkersRequest()
        found = self._call(self._stub.ListWorkers, request, retry=True).workers
        return [
            WorkerInfo(
                w.worker_id, w.hostname, w.pid, list(w.tasks), w.leases,
                w.connected_at.ToDatetime(UTC), w.last_seen.ToDatetime(UTC), w.coordinator,
            )
            for w in found
        ]

    def queues(self) -> builtins.list[QueueInfo]:
        """Per task: ready, waiting and running executions and the oldest ready age."""
        request = client_pb2.ListQueuesRequest()
        found = self._call(self._stub.ListQueues, request, retry=True).queues
        return [
            QueueInfo(q.task, q.ready, q.waiting, q.running, q.oldest_ready_age_seconds,
                      q.live_workers)
            for q in found
        ]


@dataclass(frozen=True)
class Step:
    """A recorded step."""

    name: str
    result: Any
    saved_at: datetime


@dataclass(frozen=True)
class CoordinatorStatus:
    """What `Client.status()` tells of the coordinator."""

    version: str
    name: str
    database: str
    data_dir: str | None
    database_ok: bool
    database_error: str


#: log lines the coordinator returns per ListLogs call
LOG_PAGE = 1000


@dataclass(frozen=True)
class LogEntry:
    """A line an execution's handler logged through ctx.logger."""

    sequence: int
    attempt: int
    level: str
    message: str
    logged_at: datetime


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


def _options(
    run_at: datetime | None,
    delay: float | None,
    priority: int,
    dedupe_key: str | None,
    queue: str | None,
    max_attempts: int | None,
) -> client_pb2.InvokeOptions:
    options = client_pb2.InvokeOptions(
        delay_seconds=delay or 0.0,
        priority=priority,
        dedupe_key=dedupe_key or "",
        queue=queue or "",
        max_attempts=max_attempts or 0,
    )
    if run_at is not None:
        if run_at.tzinfo is None:
            raise InvalidArgument("run_at: needs a timezone-aware datetime")
        options.run_at.FromDatetime(run_at.astimezone(UTC))
    return options


__all__ = ["Client", "ConductorError", "ErrorInfo", "Execution", "Schedule"]
