"""The workflow calls of the public API (Emit, Signal, WorkflowWait): protobuf <-> domain
objects. A mixin of ClientService (client_service.py)."""

from __future__ import annotations

import dataclasses
import functools
import uuid
from typing import Any

import grpc

from conductor.v1 import client_pb2

from . import validation
from . import workflow_validation as checks
from .clock import Clock
from .dispatch import Dispatcher
from .models import FailedPrecondition, InvalidArgument, NotFound
from .settings import Settings
from .store import Store
from .workflow_store import WaitAnswer, WaitRequest, WorkflowStore

_KINDS = {
    client_pb2.WAIT_KIND_CHILDREN: "children",
    client_pb2.WAIT_KIND_SIGNAL: "signal",
    client_pb2.WAIT_KIND_EVENT: "event",
}


class WorkflowCalls:
    """Emit, Signal and WorkflowWait."""

    store: Store
    dispatcher: Dispatcher
    clock: Clock
    settings: Settings

    @functools.cached_property
    def workflows(self) -> WorkflowStore:
        return WorkflowStore(self.store.pool)

    async def Emit(  # noqa: N802
        self, request: client_pb2.EmitRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> client_pb2.EmitResponse:
        event = checks.check_event(request.event, "event")
        payload = validation.check_payload(
            request.payload_json, "payload_json", self.settings.max_payload_bytes
        )
        key = validation.check_text(request.dedupe_key, "dedupe_key", validation.MAX_DEDUPE_KEY)
        ids = await self.workflows.emit(event, payload, key or None, self.clock.now())
        if ids:  # at once here; other coordinators hear the NOTIFY conductor_emit sent
            for name, definition in list(self.dispatcher.tasks.items()):
                if any(sub[0] == event for sub in definition.subscriptions):
                    self.dispatcher.wake(name)
        return client_pb2.EmitResponse(execution_ids=[str(i) for i in ids])

    async def Signal(  # noqa: N802
        self, request: client_pb2.SignalRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> client_pb2.SignalResponse:
        execution_id = validation.parse_execution_id(request.execution_id)
        name = validation.check_text(
            request.name, "name", self.settings.max_name_length, required=True
        )
        payload = validation.check_payload(
            request.payload_json, "payload_json", self.settings.max_payload_bytes
        )
        state = await self.workflows.signal(execution_id, name, payload, self.clock.now())
        if state is None:
            raise NotFound(f"execution_id: no execution {execution_id}")
        if state in ("succeeded", "failed", "cancelled"):
            raise FailedPrecondition(
                f"execution_id: execution {execution_id} is already {state}"
            )
        return client_pb2.SignalResponse()

    async def WorkflowWait(  # noqa: N802
        self,
        request: client_pb2.WorkflowWaitRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> client_pb2.WorkflowWaitResponse:
        wait = await self._wait_request(request)
        answer: WaitAnswer = await self.workflows.wait(wait, self.clock.now())
        if answer.created_task is not None:
            self.dispatcher.wake(answer.created_task)
        return client_pb2.WorkflowWaitResponse(
            waiting=answer.result_json is None,
            result_json=answer.result_json or "",
            execution_ids=[str(i) for i in answer.child_ids],
        )

    async def _wait_request(self, request: client_pb2.WorkflowWaitRequest) -> WaitRequest:
        execution_id = validation.parse_execution_id(request.execution_id)
        try:
            token = str(uuid.UUID(request.lease_token))
        except ValueError:
            raise InvalidArgument("lease_token", "not a lease token") from None
        names = self.settings.max_name_length
        step = validation.check_text(request.step, "step", names, required=True)
        kind = _KINDS.get(request.kind)
        if kind is None:
            raise InvalidArgument("kind", f"unknown wait kind {request.kind}")
        now = self.clock.now()
        wait = WaitRequest(
            execution_id, token, step, kind,
            deadline=checks.deadline(now, request.timeout_seconds),
        )
        if kind == "signal":
            name = validation.check_text(request.name, "name", names, required=True)
            return dataclasses.replace(wait, key=name)
        if kind == "event":
            match = checks.check_filter(
                request.match_json, "match_json", self.settings.max_payload_bytes
            )
            event = checks.check_event(request.name, "name")
            return dataclasses.replace(wait, key=event, match_json=match)
        validation.check_text(request.task, "task", names)
        definition = await self.dispatcher.task_def(request.task) if request.task else None
        children = validation.new_executions(
            definition, request.task, list(request.payloads_json), now=now, run_at=None,
            delay_seconds=0, priority=request.options.priority, queue=request.options.queue,
            dedupe_key="", max_attempts=request.options.max_attempts,
            payload_limit=self.settings.max_payload_bytes, batch=True,
        )
        return dataclasses.replace(wait, children=children)
