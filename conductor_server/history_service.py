"""The public API's calls for runs kept over months: attempts, rerun and retry, bulk
operations by filter, and the task registry. Mixed into ClientService (protobuf <-> domain
objects; the rules live in operations.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from conductor.v1 import client_pb2, common_pb2

from . import operations, validation
from .clock import Clock
from .dispatch import Dispatcher
from .maintenance import FINAL_STATES, kept_for, redacted_after
from .models import Execution, InvalidArgument, State, TaskInfo
from .payload_filter import created_range, payload_filter
from .settings import Settings
from .store import Store
from .store_history import BulkFilter
from .timestamps import timestamp

_STATE_FROM_PB = {
    common_pb2.EXECUTION_STATE_PENDING: State.PENDING,
    common_pb2.EXECUTION_STATE_RUNNING: State.RUNNING,
    common_pb2.EXECUTION_STATE_SUCCEEDED: State.SUCCEEDED,
    common_pb2.EXECUTION_STATE_FAILED: State.FAILED,
    common_pb2.EXECUTION_STATE_CANCELLED: State.CANCELLED,
}
_ACTIONS = {
    client_pb2.BULK_ACTION_CANCEL: operations.BulkAction.CANCEL,
    client_pb2.BULK_ACTION_RETRY: operations.BulkAction.RETRY,
    client_pb2.BULK_ACTION_DELETE: operations.BulkAction.DELETE,
}

Context = grpc.aio.ServicerContext[Any, Any]


class HistoryCalls:
    """RerunExecution, RetryExecution, BulkExecutions, ListTasks and DeleteTask."""

    store: Store
    dispatcher: Dispatcher
    clock: Clock
    settings: Settings

    async def _get(self, execution_id: int) -> Execution:
        raise NotImplementedError  # ClientService's

    async def _with_attempts(self, execution: Execution) -> common_pb2.Execution:
        raise NotImplementedError  # ClientService's

    def _operations(self) -> operations.Operations:
        return operations.Operations(self.store, self.dispatcher, self.clock, self.settings)

    async def RerunExecution(  # noqa: N802
        self, request: client_pb2.RerunExecutionRequest, context: Context
    ) -> common_pb2.Execution:
        execution_id = validation.parse_execution_id(request.execution_id)
        validation.check_text(request.from_step, "from_step", self.settings.max_name_length)
        payload = (
            validation.check_payload(
                request.payload_json, "payload_json", self.settings.max_payload_bytes
            )
            if request.HasField("payload_json")
            else None
        )
        created = await self._operations().rerun(execution_id, request.from_step or None, payload)
        return await self._with_attempts(created)

    async def RetryExecution(  # noqa: N802
        self, request: client_pb2.RetryExecutionRequest, context: Context
    ) -> common_pb2.Execution:
        execution_id = validation.parse_execution_id(request.execution_id)
        return await self._with_attempts(await self._operations().retry(execution_id))

    async def BulkExecutions(  # noqa: N802
        self, request: client_pb2.BulkExecutionsRequest, context: Context
    ) -> client_pb2.BulkExecutionsResponse:
        if request.action not in _ACTIONS:
            raise InvalidArgument("action", "must be CANCEL, RETRY or DELETE")
        action = _ACTIONS[request.action]
        f = request.filter
        limits = self.settings
        validation.check_text(f.task, "filter.task", limits.max_name_length)
        validation.check_text(f.queue, "filter.queue", validation.MAX_QUEUE_NAME)
        states = []
        for value in f.states:
            if value not in _STATE_FROM_PB:
                raise InvalidArgument("filter.states", f"unknown state {value}")
            states.append(_STATE_FROM_PB[value])
        after, before = created_range(f, "filter.")
        parent = validation.parse_execution_id(f.parent_id, "filter.parent_id") if f.parent_id \
            else None
        payload = payload_filter(
            f.payload_match_json, "filter.payload_match_json", limits.max_payload_bytes
        )
        bulk = BulkFilter(tuple(states), f.task or None, f.queue or None, after, before,
                          parent, payload)
        matched, affected = await self._operations().bulk(
            action, bulk, dry_run=request.dry_run, everything=request.all
        )
        return client_pb2.BulkExecutionsResponse(matched=matched, affected=affected)

    async def ListTasks(  # noqa: N802
        self, request: client_pb2.ListTasksRequest, context: Context
    ) -> client_pb2.ListTasksResponse:
        seen_after = datetime.now(UTC) - timedelta(seconds=2 * self.settings.lease_timeout)
        stale_before = self.clock.now() - timedelta(seconds=self.settings.task_stale_after)
        tasks = await self.store.list_tasks(seen_after)
        return client_pb2.ListTasksResponse(
            tasks=[self._task_to_pb(t, stale_before) for t in tasks]
        )

    def _task_to_pb(self, t: TaskInfo, stale_before: datetime) -> client_pb2.TaskInfo:
        kept = [kept_for(t.retention, state, self.settings) for state in FINAL_STATES]
        redact = redacted_after(t.retention, self.settings)
        return client_pb2.TaskInfo(
            name=t.name,
            workers=list(t.workers),
            last_seen=timestamp(t.last_seen),
            stale=not t.workers and t.last_seen < stale_before,
            retention_succeeded_seconds=kept[0],
            retention_failed_seconds=kept[1],
            retention_cancelled_seconds=kept[2],
            redact_after_seconds=-1.0 if redact is None else redact,
        )

    async def DeleteTask(  # noqa: N802
        self, request: client_pb2.DeleteTaskRequest, context: Context
    ) -> client_pb2.DeleteTaskResponse:
        validation.check_text(request.name, "name", self.settings.max_name_length, required=True)
        seen_after = datetime.now(UTC) - timedelta(seconds=2 * self.settings.lease_timeout)
        deleted = await self._operations().delete_task(request.name, seen_after)
        return client_pb2.DeleteTaskResponse(deleted_schedules=deleted)
