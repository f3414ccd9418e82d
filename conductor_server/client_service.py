"""The public API's servicer (ConductorService): protobuf <-> domain objects, and nothing
else."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from psycopg.conninfo import conninfo_to_dict

from conductor.v1 import client_pb2, client_pb2_grpc, common_pb2

from . import validation
from .clock import Clock
from .dashboard_service import DashboardCalls
from .dispatch import Dispatcher
from .explain import Explanation, explain
from .history_service import HistoryCalls
from .idempotency import check_request_id
from .models import (
    Attempt,
    ErrorInfo,
    Execution,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Schedule,
    State,
)
from .payload_filter import created_range as _created_range
from .payload_filter import payload_filter
from .scheduler import Scheduler, new_schedule, require_task
from .settings import Settings
from .store import Store
from .timestamps import timestamp
from .workflow_service import WorkflowCalls

#: seconds GetStatus waits for the database
PING_TIMEOUT = 2.0
#: most log lines one ListLogs call returns
MAX_LOG_PAGE = 1000

log = logging.getLogger(__name__)

_STATE_TO_PB = {
    State.PENDING: common_pb2.EXECUTION_STATE_PENDING,
    State.RUNNING: common_pb2.EXECUTION_STATE_RUNNING,
    State.SUCCEEDED: common_pb2.EXECUTION_STATE_SUCCEEDED,
    State.FAILED: common_pb2.EXECUTION_STATE_FAILED,
    State.CANCELLED: common_pb2.EXECUTION_STATE_CANCELLED,
}
_PB_TO_STATE = {v: k for k, v in _STATE_TO_PB.items()}


_OUTCOME_TO_PB = {
    "running": common_pb2.ATTEMPT_OUTCOME_RUNNING,
    "succeeded": common_pb2.ATTEMPT_OUTCOME_SUCCEEDED,
    "failed": common_pb2.ATTEMPT_OUTCOME_FAILED,
    "released": common_pb2.ATTEMPT_OUTCOME_RELEASED,
    "cancelled": common_pb2.ATTEMPT_OUTCOME_CANCELLED,
}


def error_to_pb(error: ErrorInfo | None) -> common_pb2.ErrorInfo | None:
    if error is None:
        return None
    return common_pb2.ErrorInfo(type=error.type, message=error.message, traceback=error.traceback)


def attempt_to_pb(a: Attempt) -> common_pb2.Attempt:
    return common_pb2.Attempt(
        number=a.n,
        attempt=a.attempt,
        worker_id=a.worker_id,
        started_at=timestamp(a.started_at),
        finished_at=timestamp(a.finished_at),
        outcome=_OUTCOME_TO_PB.get(a.outcome, common_pb2.ATTEMPT_OUTCOME_UNSPECIFIED),
        reason=a.reason,
        error=error_to_pb(a.error),
    )


def explanation_to_pb(x: Explanation) -> common_pb2.Explanation:
    return common_pb2.Explanation(
        reason=x.reason.value,  # type: ignore[arg-type]
        message=x.message,
        until=timestamp(x.until),
        execution_ids=[str(i) for i in x.execution_ids],
    )


def execution_to_pb(
    e: Execution, attempts: list[Attempt] | None = None, explanation: Explanation | None = None
) -> common_pb2.Execution:
    return common_pb2.Execution(
        id=str(e.id),
        task=e.task,
        state=_STATE_TO_PB[e.state],
        attempt=e.attempt,
        max_attempts=e.max_attempts,
        payload_json=e.payload_json,
        result_json=e.result_json or "",
        error=error_to_pb(e.error),
        priority=e.priority,
        queue=e.queue,
        created_at=timestamp(e.created_at),
        run_at=timestamp(e.run_at),
        started_at=timestamp(e.started_at),
        finished_at=timestamp(e.finished_at),
        dedupe_key=e.dedupe_key or "",
        cancel_requested=e.cancel_requested,
        schedule=e.schedule or "",
        fire_time=timestamp(e.fire_time),
        parent_id=str(e.parent_id) if e.parent_id else "",
        waiting_for=e.waiting_for or "",
        attempts=[attempt_to_pb(a) for a in attempts or ()],
        rerun_of=str(e.rerun_of) if e.rerun_of is not None else "",
        redacted_at=timestamp(e.redacted_at),
        dead_letter_of=str(e.dead_letter_of) if e.dead_letter_of is not None else "",
        timeout_seconds=e.timeout or 0.0,
        concurrency_key=e.concurrency_key or "",
        explanation=explanation_to_pb(explanation) if explanation is not None else None,
    )


_MISSED_TO_PB = {
    "latest": client_pb2.MISSED_FIRE_POLICY_LATEST,
    "skip": client_pb2.MISSED_FIRE_POLICY_SKIP,
    "all": client_pb2.MISSED_FIRE_POLICY_ALL,
}
_PB_TO_MISSED = {v: k for k, v in _MISSED_TO_PB.items()}
_PB_TO_MISSED[client_pb2.MISSED_FIRE_POLICY_UNSPECIFIED] = "latest"


def schedule_to_pb(s: Schedule) -> client_pb2.Schedule:
    return client_pb2.Schedule(
        task=s.task,
        name=s.name,
        cron=s.cron,
        timezone=s.timezone,
        payload_json=s.payload_json,
        static=s.static,
        missed=_MISSED_TO_PB[s.missed],
        missed_limit=s.missed_limit,
        next_fire_at=timestamp(s.next_fire_at),
    )


class ClientService(
    WorkflowCalls, HistoryCalls, DashboardCalls, client_pb2_grpc.ConductorServiceServicer
):
    """The public API."""

    def __init__(
        self,
        store: Store,
        dispatcher: Dispatcher,
        scheduler: Scheduler,
        clock: Clock,
        settings: Settings,
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.scheduler = scheduler
        self.clock = clock
        self.settings = settings

    async def _invoke(
        self,
        task: str,
        payloads: list[str],
        options: client_pb2.InvokeOptions,
        batch: bool,
        request_id: str,
        trace_context: str,
        dedupe_keys: Sequence[str] = (),
    ) -> tuple[list[int], list[bool]]:
        key = check_request_id(request_id)
        limits = self.settings.limits
        validation.check_text(task, "task", limits.name_length)
        run_at = (
            validation.check_time(options.run_at.seconds, options.run_at.nanos, "options.run_at")
            if options.HasField("run_at")
            else None
        )
        definition = await self.dispatcher.task_def(task) if task else None
        new = validation.new_executions(
            definition,
            task,
            payloads,
            now=self.clock.now(),
            run_at=run_at,
            delay_seconds=options.delay_seconds,
            priority=options.priority,
            queue=options.queue,
            dedupe_key=options.dedupe_key,
            max_attempts=options.max_attempts,
            payload_limit=self.settings.max_payload_bytes,
            batch=batch,
            trace_context=trace_context,
            timeout_seconds=options.timeout_seconds,
            concurrency_key=options.concurrency_key,
            debounce=options.debounce_seconds,
            throttle=options.throttle_seconds,
            dedupe_keys=dedupe_keys,
        )
        ids, created = await self.store.insert_executions(new, self.clock.now(), key)
        if any(created):
            self.dispatcher.wake(new.task, new.run_at)
        return ids, created

    async def Invoke(  # noqa: N802
        self, request: client_pb2.InvokeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> client_pb2.InvokeResponse:
        ids, created = await self._invoke(
            request.task, [request.payload_json], request.options, batch=False,
            request_id=request.request_id, trace_context=request.trace_context,
        )
        return client_pb2.InvokeResponse(execution_id=str(ids[0]), created=created[0])

    async def InvokeBatch(  # noqa: N802
        self, request: client_pb2.InvokeBatchRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> client_pb2.InvokeBatchResponse:
        ids, created = await self._invoke(
            request.task, list(request.payloads_json), request.options, batch=True,
            request_id=request.request_id, trace_context=request.trace_context,
            dedupe_keys=list(request.dedupe_keys),
        )
        # without keys every item was created: no flags (a 100,000 batch stays as small)
        return client_pb2.InvokeBatchResponse(execution_ids=[str(i) for i in ids],
                                              created=created if request.dedupe_keys else [])

    async def _get(self, execution_id: int) -> Execution:
        found = await self.store.get_execution(execution_id)
        if found is None:
            raise NotFound(f"execution_id: no execution {execution_id}")
        return found

    async def GetExecution(  # noqa: N802
        self, request: client_pb2.GetExecutionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> common_pb2.Execution:
        execution = await self._get(validation.parse_execution_id(request.execution_id))
        return await self._with_attempts(execution, explained=True)

    async def _with_attempts(
        self, execution: Execution, explained: bool = False
    ) -> common_pb2.Execution:
        ended = await self.store.list_attempts(execution.id)
        why = None
        if explained and execution.state is State.PENDING:
            seen_after = datetime.now(UTC) - timedelta(seconds=2 * self.settings.lease_timeout)
            task = await self.dispatcher.task_def(execution.task)
            why = await explain(self.store, task, execution, self.clock.now(), seen_after)
        return execution_to_pb(execution, execution.attempts(ended), why)

    async def ListAttempts(  # noqa: N802
        self, request: client_pb2.ListAttemptsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> client_pb2.ListAttemptsResponse:
        execution = await self._get(validation.parse_execution_id(request.execution_id))
        ended = await self.store.list_attempts(execution.id)
        return client_pb2.ListAttemptsResponse(
            attempts=[attempt_to_pb(a) for a in execution.attempts(ended)]
        )

    async def WaitExecution(  # noqa: N802
        self, request: client_pb2.WaitExecutionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> common_pb2.Execution:
        execution_id = validation.parse_execution_id(request.execution_id)
        timeout = validation.wait_timeout(request.timeout_seconds)
        remaining = context.time_remaining()
        if remaining is not None:
            # gRPC rounds the deadline it sends up (to 100 ms above 10 s, coarser later), so
            # the server sees up to ~1% more than the caller waits: answer that much sooner.
            timeout = min(timeout, max(0.0, remaining * 0.98 - 0.05))
        waiter = self.dispatcher.waiters.register(execution_id)
        try:
            execution = await self._get(execution_id)
            if not execution.state.finished and timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter, timeout)
                execution = await self._get(execution_id)
        finally:
            self.dispatcher.waiters.unregister(execution_id, waiter)
        return await self._with_attempts(execution)

    async def CancelExecution(  # noqa: N802
        self,
        request: client_pb2.CancelExecutionRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> common_pb2.Execution:
        execution_id = validation.parse_execution_id(request.execution_id)
        outcome = await self.store.cancel(execution_id, self.clock.now())
        if outcome is None:
            execution = await self._get(execution_id)
            raise FailedPrecondition(
                f"execution_id: execution {execution_id} is already {execution.state.value}"
            )
        if outcome[0] is State.CANCELLED:
            self.dispatcher.waiters.finished([execution_id])
        else:
            self.dispatcher.cancel_running(execution_id)
        return execution_to_pb(await self._get(execution_id))

    async def ListExecutions(  # noqa: N802
        self,
        request: client_pb2.ListExecutionsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> client_pb2.ListExecutionsResponse:
        size = validation.page_size(request.page_size)
        before = (
            validation.parse_execution_id(request.page_token, "page_token")
            if request.page_token
            else None
        )
        states = []
        for value in request.states:
            if value not in _PB_TO_STATE:
                raise InvalidArgument("states", f"unknown state {value}")
            states.append(_PB_TO_STATE[value])
        validation.check_text(request.task, "task", self.settings.max_name_length)
        validation.check_text(request.queue, "queue", validation.MAX_QUEUE_NAME)
        created_after, created_before = _created_range(request, "")
        payload = payload_filter(
            request.payload_match_json, "payload_match_json", self.settings.max_payload_bytes
        )
        rows = await self.store.list_executions(
            task=request.task or None,
            states=states,
            queue=request.queue or None,
            before_id=before,
            limit=size + 1,
            parent_id=validation.parse_execution_id(request.parent_id, "parent_id")
            if request.parent_id
            else None,
            created_after=created_after,
            created_before=created_before,
            payload=payload,
        )
        page, more = rows[:size], len(rows) > size
        return client_pb2.ListExecutionsResponse(
            executions=[execution_to_pb(e) for e in page],
            next_page_token=str(page[-1].id) if more else "",
        )


    async def PutSchedule(  # noqa: N802
        self, request: client_pb2.PutScheduleRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> client_pb2.Schedule:
        pb = request.schedule
        names = self.settings.max_name_length
        validation.check_text(pb.task, "schedule.task", names)
        validation.check_text(pb.name, "schedule.name", names)
        validation.check_text(pb.cron, "schedule.cron", names)
        validation.check_text(pb.timezone, "schedule.timezone", names)
        if pb.missed not in _PB_TO_MISSED:
            raise InvalidArgument("schedule.missed", f"unknown policy {pb.missed}")
        schedule = new_schedule(
            task=pb.task,
            name=pb.name,
            expression=pb.cron,
            timezone=pb.timezone,
            payload_json=pb.payload_json,
            static=False,
            missed=_PB_TO_MISSED[pb.missed],
            missed_limit=pb.missed_limit or 1,
            now=self.clock.now(),
            payload_limit=self.settings.max_payload_bytes,
        )
        await require_task(self.dispatcher, pb.task)
        stored = await self.store.put_schedule(schedule, self.clock.now())
        self.scheduler.wake()
        return schedule_to_pb(stored)

    async def DeleteSchedule(  # noqa: N802
        self,
        request: client_pb2.DeleteScheduleRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> client_pb2.DeleteScheduleResponse:
        validation.check_text(request.task, "task", self.settings.max_name_length, required=True)
        validation.check_text(request.name, "name", self.settings.max_name_length, required=True)
        cancelled = await self.store.delete_schedule(request.task, request.name, self.clock.now())
        if cancelled is None:
            raise NotFound(
                f"name: task {validation.shown(request.task)} has no schedule named "
                f"{validation.shown(request.name)}"
            )
        return client_pb2.DeleteScheduleResponse(cancelled_fires=cancelled)

    async def ListSchedules(  # noqa: N802
        self,
        request: client_pb2.ListSchedulesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> client_pb2.ListSchedulesResponse:
        validation.check_text(request.task, "task", self.settings.max_name_length)
        schedules = await self.store.list_schedules(request.task or None)
        return client_pb2.ListSchedulesResponse(schedules=[schedule_to_pb(s) for s in schedules])


    async def ListSteps(  # noqa: N802
        self, request: client_pb2.ListStepsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> client_pb2.ListStepsResponse:
        execution_id = validation.parse_execution_id(request.execution_id)
        await self._get(execution_id)
        steps = await self.store.list_steps(execution_id)
        return client_pb2.ListStepsResponse(
            steps=[
                client_pb2.Step(
                    name=s.name, result_json=s.result_json, saved_at=timestamp(s.created_at)
                )
                for s in steps
            ]
        )

    async def GetStatus(  # noqa: N802
        self, request: client_pb2.GetStatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> client_pb2.CoordinatorStatus:
        embedded = self.settings.database_url is None
        status = client_pb2.CoordinatorStatus(
            version=version(), name=self.dispatcher.name,
            database="embedded PostgreSQL" if embedded else database_place(
                self.settings.database_url or ""),
            data_dir=str(self.settings.data_dir) if embedded else "",
            database_ok=True,
        )
        try:
            await asyncio.wait_for(self.store.ping(), PING_TIMEOUT)
        except Exception:
            log.warning("status: the database did not answer", exc_info=True)
            status.database_ok = False
            status.database_error = (f"no answer within {PING_TIMEOUT:.0f}s"
                                     " (the coordinator's log has the details)")
        return status

    async def ListLogs(  # noqa: N802
        self, request: client_pb2.ListLogsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> client_pb2.ListLogsResponse:
        execution_id = validation.parse_execution_id(request.execution_id)
        if request.after < 0:
            raise InvalidArgument("after", f"must be >= 0, got {request.after}")
        if not 0 <= request.limit <= MAX_LOG_PAGE:
            raise InvalidArgument("limit", f"must be 0..{MAX_LOG_PAGE}, got {request.limit}")
        await self._get(execution_id)
        lines = await self.store.list_log_lines(
            execution_id, request.after, request.limit or MAX_LOG_PAGE
        )
        return client_pb2.ListLogsResponse(lines=[
            client_pb2.LogEntry(sequence=x.sequence, attempt=x.attempt, level=x.level,
                                message=x.message, logged_at=timestamp(x.logged_at))
            for x in lines
        ])

    async def ListWorkers(  # noqa: N802
        self, request: client_pb2.ListWorkersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> client_pb2.ListWorkersResponse:
        seen_after = datetime.now(UTC) - timedelta(seconds=2 * self.settings.lease_timeout)
        workers = await self.store.list_workers(seen_after)
        return client_pb2.ListWorkersResponse(
            workers=[
                client_pb2.Worker(
                    worker_id=w.worker_id,
                    hostname=w.hostname,
                    pid=w.pid,
                    tasks=list(w.tasks),
                    leases=w.leases,
                    connected_at=timestamp(w.connected_at),
                    last_seen=timestamp(w.last_seen),
                    coordinator=w.coordinator,
                    capacity=w.capacity,
                )
                for w in workers
            ]
        )

    async def ListQueues(  # noqa: N802
        self, request: client_pb2.ListQueuesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> client_pb2.ListQueuesResponse:
        now = self.clock.now()
        seen_after = datetime.now(UTC) - timedelta(seconds=2 * self.settings.lease_timeout)
        stats = await self.store.queue_stats(now, seen_after)
        return client_pb2.ListQueuesResponse(
            queues=[
                client_pb2.QueueStats(
                    task=q.task,
                    ready=q.ready,
                    waiting=q.waiting,
                    running=q.running,
                    oldest_ready_age_seconds=max(0.0, (now - q.oldest_ready_at).total_seconds())
                    if q.oldest_ready_at
                    else 0.0,
                    live_workers=q.live_workers,
                )
                for q in stats
            ]
        )


def version() -> str:
    try:
        return importlib.metadata.version("conductor-tasks")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def database_place(url: str) -> str:
    """host:port/database of a PostgreSQL URL, without user, password or options."""
    try:
        parts = conninfo_to_dict(url)
    except Exception:
        return "(unreadable URL)"
    host = parts.get("host") or "localhost"
    port = parts.get("port") or "5432"
    return f"{host}:{port}/{parts.get('dbname') or parts.get('user') or ''}"
