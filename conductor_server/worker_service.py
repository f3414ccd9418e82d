"""The worker stream's servicer (WorkerService): registration, then writes in and leases and
acks out; protobuf <-> domain objects, and nothing else."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from conductor.v1 import worker_pb2, worker_pb2_grpc

from . import flow_validation, validation
from .cron import validate_cron
from .dispatch import Dispatcher
from .models import (
    ErrorInfo,
    InvalidArgument,
    Lease,
    LeaseRef,
    LogLine,
    OutcomeKind,
    OutcomeWrite,
    Retention,
    RetryPolicy,
    StepWrite,
    TaskDef,
)
from .scheduler import Scheduler
from .sessions import (
    CancelRequest,
    ClockSync,
    Drained,
    HeartbeatAck,
    LeasingStopped,
    OutcomeAck,
    Outgoing,
    Session,
    StepAck,
    WindowRelease,
)
from .settings import Settings
from .timestamps import timestamp
from .validation import Limits
from .workflow_store import WorkflowStore
from .workflow_validation import check_subscriptions

log = logging.getLogger(__name__)


def _lease_ref(execution_id: str, token: str) -> LeaseRef | None:
    """A well-formed (id, token) pair, or None (which can only be stale)."""
    try:
        if not _CANONICAL_UUID.fullmatch(token):  # what the coordinator hands out
            token = str(uuid.UUID(token))
        return LeaseRef(validation.parse_execution_id(execution_id), token)
    except (InvalidArgument, ValueError):
        return None


def _lease_refs(refs: Iterable[worker_pb2.LeaseRef]) -> list[LeaseRef]:
    return [r for m in refs if (r := _lease_ref(m.execution_id, m.lease_token)) is not None]


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def task_from_pb(t: worker_pb2.TaskDefinition, index: int, limits: Limits) -> TaskDef:
    prefix = f"register.tasks[{index}]"
    retry = t.retry
    if len(t.schedules) > validation.MAX_PER_TASK:
        raise InvalidArgument(f"{prefix}.schedules", f"at most {validation.MAX_PER_TASK}")
    names = [s.name for s in t.schedules]
    for j, s in enumerate(t.schedules):
        field_name = f"{prefix}.schedules[{j}]"
        validation.check_text(s.name, f"{field_name}.name", limits.name_length, required=True)
        if names.index(s.name) != j:
            raise InvalidArgument(f"{field_name}.name", "schedule names must be unique per task")
        validation.check_text(s.cron, f"{field_name}.cron", limits.name_length)
    for name in ("start", "end"):
        validation.check_text(getattr(t.window, name), f"{prefix}.window.{name}", 5)
    rate = (
        flow_validation.parse_rate_limit(t.rate_limit, f"{prefix}.rate_limit")
        if t.rate_limit else (0, 0.0)
    )
    if t.rate_limit_name and not t.rate_limit:
        raise InvalidArgument(f"{prefix}.rate_limit_name", "needs rate_limit")
    definition = TaskDef(
        name=t.name,
        max_attempts=t.max_attempts,
        retry=RetryPolicy(
            initial_backoff=retry.initial_backoff_seconds,
            max_backoff=retry.max_backoff_seconds,
            multiplier=retry.multiplier,
            jitter=retry.jitter,
            non_retryable_errors=tuple(retry.non_retryable_errors),
        ),
        window_start=t.window.start if t.HasField("window") else None,
        window_end=t.window.end if t.HasField("window") else None,
        timezone=t.timezone or "UTC",
        concurrency=t.concurrency,
        schedules=tuple(
            (s.name, validate_cron(s.cron, f"{prefix}.schedules[{j}].cron"))
            for j, s in enumerate(t.schedules)
        ),
        subscriptions=check_subscriptions(
            [(s.event, s.filter_json) for s in t.subscriptions], f"{prefix}.subscriptions",
            limits.payload_bytes,
        ),
        retention=_retention_from_pb(t.retention),
        timeout=validation.check_timeout(t.timeout_seconds, f"{prefix}.timeout_seconds"),
        on_failure=validation.check_text(
            t.on_failure, f"{prefix}.on_failure", limits.name_length) or None,
        key_path=flow_validation.parse_key_path(t.key, f"{prefix}.key"),
        key_concurrency=t.key_concurrency,
        rate_count=rate[0],
        rate_period=rate[1],
        rate_limit_name=t.rate_limit_name,
        queue=flow_validation.check_queue_name(t.queue, f"{prefix}.queue") if t.queue
        else "default",
    )
    flow_validation.check_flow(definition, prefix)
    return validation.check_task_def(definition, t.capacity, prefix, limits)


def _retention_from_pb(r: worker_pb2.Retention) -> Retention:
    return Retention(
        r.succeeded_seconds if r.HasField("succeeded_seconds") else None,
        r.failed_seconds if r.HasField("failed_seconds") else None,
        r.cancelled_seconds if r.HasField("cancelled_seconds") else None,
        r.redact_after_seconds if r.HasField("redact_after_seconds") else None,
    )


#: most leases a reconnecting worker may claim to hold
MAX_HELD = 100_000


def register_from_pb(register: worker_pb2.Register, limits: Limits) -> Session:
    """Validate a whole Register (nothing is written before this returned)."""
    names = limits.name_length
    validation.check_text(register.worker_id, "register.worker_id", names, required=True)
    validation.check_text(register.hostname, "register.hostname", names)
    if not register.tasks:
        raise InvalidArgument("register.tasks", "a worker must register at least one task")
    if len(register.tasks) > limits.register_tasks:
        raise InvalidArgument(
            "register.tasks", f"at most {limits.register_tasks} tasks, got {len(register.tasks)}"
        )
    tasks: dict[str, TaskDef] = {}
    for i, t in enumerate(register.tasks):
        definition = task_from_pb(t, i, limits)
        if not 0 <= t.processes <= validation.MAX_CAPACITY:
            raise InvalidArgument(f"register.tasks[{i}].processes", "must be 0..100000")
        if definition.name in tasks:
            raise InvalidArgument(
                f"register.tasks[{i}].name", f"{validation.shown(t.name)} is registered twice"
            )
        tasks[definition.name] = definition
    if len(register.held_leases) > MAX_HELD:
        raise InvalidArgument("register.held_leases", f"at most {MAX_HELD}")
    if len(register.queues) > validation.MAX_PER_TASK:
        raise InvalidArgument("register.queues", f"at most {validation.MAX_PER_TASK}")
    queues = tuple(
        flow_validation.check_queue_name(q, f"register.queues[{i}]")
        for i, q in enumerate(register.queues)
    )
    return Session(
        worker_id=register.worker_id,
        tasks=tasks,
        capacity={t.name: t.capacity for t in register.tasks},
        slots={t.name: max(1, t.processes) for t in register.tasks},
        drain=register.drain,
        hostname=register.hostname,
        pid=register.pid,
        queues=queues or None,
    )


def lease_to_pb(lease: Lease, granted: Timestamp | None = None) -> worker_pb2.Lease:
    """The lease's message; `granted` is its coordinator_time already converted (the leases
    of one batch share it, and a conversion costs more than the rest of the message)."""
    return worker_pb2.Lease(
        execution_id=str(lease.execution_id),
        task=lease.task,
        lease_token=lease.token,
        attempt=lease.attempt,
        max_attempts=lease.max_attempts,
        payload_json=lease.payload_json,
        steps=lease.steps,
        coordinator_time=granted or timestamp(lease.granted_at),
        schedule=lease.schedule or "",
        fire_time=timestamp(lease.fire_time),
        window_closes_at=timestamp(lease.window_closes_at),
        window_reopens_at=timestamp(lease.window_reopens_at),
        priority=lease.priority,
        trace_context=lease.trace_context or "",
        timeout_seconds=lease.timeout,
    )


def _leases_to_pb(leases: list[Lease]) -> list[worker_pb2.Lease]:
    granted: dict[datetime, Timestamp | None] = {}
    items = []
    for lease in leases:
        at = granted.get(lease.granted_at)
        if at is None:
            at = granted[lease.granted_at] = timestamp(lease.granted_at)
        items.append(lease_to_pb(lease, at))
    return items


def outgoing_to_pb(message: Outgoing) -> worker_pb2.CoordinatorMessage:
    if isinstance(message, HeartbeatAck):
        return worker_pb2.CoordinatorMessage(
            heartbeat_ack=worker_pb2.HeartbeatAck(
                coordinator_time=timestamp(message.coordinator_time),
                lost_leases=[
                    worker_pb2.LeaseRef(execution_id=str(r.execution_id), lease_token=r.token)
                    for r in message.lost
                ],
            )
        )
    if isinstance(message, ClockSync):
        return worker_pb2.CoordinatorMessage(
            clock_sync=worker_pb2.ClockSync(
                coordinator_time=timestamp(message.coordinator_time), sequence=message.sequence
            )
        )
    if isinstance(message, Drained):
        return worker_pb2.CoordinatorMessage(drained=worker_pb2.Drained())
    if isinstance(message, LeasingStopped):
        return worker_pb2.CoordinatorMessage(leasing_stopped=worker_pb2.LeasingStopped())
    if isinstance(message, WindowRelease):
        at = timestamp(message.run_at)
        return worker_pb2.CoordinatorMessage(
            release_requests=worker_pb2.ReleaseRequests(
                items=[
                    worker_pb2.ReleaseRequest(
                        execution_id=str(i), reason=worker_pb2.RELEASE_REASON_WINDOW, run_at=at
                    )
                    for i in message.execution_ids
                ]
            )
        )
    if isinstance(message, CancelRequest):
        return worker_pb2.CoordinatorMessage(
            cancel_requests=worker_pb2.CancelRequests(
                execution_ids=[str(i) for i in message.execution_ids]
            )
        )
    assert message, "empty batches are never queued"
    first = message[0]
    if isinstance(first, Lease):
        return worker_pb2.CoordinatorMessage(
            leases=worker_pb2.Leases(items=_leases_to_pb(message))  # type: ignore[arg-type]
        )
    if isinstance(first, StepAck):
        return worker_pb2.CoordinatorMessage(
            step_acks=worker_pb2.StepAcks(items=[_step_ack(m) for m in message])  # type: ignore[arg-type]
        )
    return worker_pb2.CoordinatorMessage(
        outcome_acks=worker_pb2.OutcomeAcks(items=[_outcome_ack(m) for m in message])  # type: ignore[arg-type]
    )


async def _drain(outbox: asyncio.Queue[Outgoing]) -> tuple[list[Outgoing], bool]:
    """Everything queued for a worker, consecutive batches of one kind merged so that they
    go down the stream as one message, and whether the session was closed."""
    items = [await outbox.get()]
    while not outbox.empty():
        items.append(outbox.get_nowait())
    merged: list[Outgoing] = []
    for item in items:
        if item is None:
            return merged, True
        last = merged[-1] if merged else None
        if isinstance(item, list) and isinstance(last, list) and type(item[0]) is type(last[0]):
            last.extend(item)  # type: ignore[arg-type]
        else:
            merged.append(item[:] if isinstance(item, list) else item)
    return merged, False


#: bytes of leases per message at most (a worker receives up to 64 MiB; one lease can be
#: larger than this, up to Dispatcher's MAX_LEASE_BYTES, and then goes alone)
LEASE_MESSAGE_BUDGET = 8 * 1024 * 1024


def _split_leases(message: Outgoing) -> list[Outgoing]:
    """A batch of leases in as many messages as keep each under LEASE_MESSAGE_BUDGET."""
    if not isinstance(message, list) or not message or not isinstance(message[0], Lease):
        return [message]
    parts: list[Outgoing] = []
    part: list[Lease] = []
    used = 0
    for lease in message:
        assert isinstance(lease, Lease)
        size = lease.size()
        if part and used + size > LEASE_MESSAGE_BUDGET:
            parts.append(part)
            part, used = [], 0
        part.append(lease)
        used += size
    parts.append(part)
    return parts


_NO_LEASE = LeaseRef(0, "")
_OK = worker_pb2.WRITE_STATUS_OK
_STALE = worker_pb2.WRITE_STATUS_STALE_LEASE
_INVALID = worker_pb2.WRITE_STATUS_INVALID


def _status(ok: bool) -> worker_pb2.WriteStatus.ValueType:
    return worker_pb2.WRITE_STATUS_OK if ok else worker_pb2.WRITE_STATUS_STALE_LEASE


def _step_ack(ack: StepAck) -> worker_pb2.StepAck:
    if ack.recorded is not None:
        return worker_pb2.StepAck(
            execution_id=ack.execution_id, lease_token=ack.token, name=ack.name, status=_OK,
            result_json=ack.recorded,
        )
    return worker_pb2.StepAck(  # refused (error says why) or stale
        execution_id=ack.execution_id, lease_token=ack.token, name=ack.name,
        status=_INVALID if ack.error else _STALE, error=ack.error,
    )


def _outcome_ack(ack: OutcomeAck) -> worker_pb2.OutcomeAck:
    if isinstance(ack, RefusedOutcome):
        return worker_pb2.OutcomeAck(
            execution_id=ack.execution_id, lease_token=ack.token, status=ack.status
        )
    answer = worker_pb2.OutcomeAck(
        execution_id=str(ack.lease.execution_id),
        lease_token=ack.lease.token,
        status=_status(ack.ok),
        state=ack.state,
    )
    run_at = timestamp(ack.run_at) if ack.state == "pending" else None
    if run_at is not None:
        answer.run_at.CopyFrom(run_at)
    return answer


def log_line_from_pb(item: worker_pb2.LogLine, session: Session, settings: Settings,
                     now: datetime) -> LogLine | None:
    """A storable log line, or None when its execution is not leased to this session."""
    try:
        execution_id = validation.parse_execution_id(item.execution_id)
        logged_at = validation.check_time(item.logged_at.seconds, item.logged_at.nanos,
                                          "logged_at") if item.HasField("logged_at") else now
    except InvalidArgument:
        return None
    if execution_id not in session.inflight:
        return None
    return LogLine(execution_id, max(0, item.attempt), validation.sanitize(item.level, 16),
                   validation.sanitize(item.message, settings.max_log_line_bytes), logged_at)


def outcome_from_pb(
    o: worker_pb2.Outcome, ref: LeaseRef, limits: Limits, worker_id: str
) -> OutcomeWrite:
    """A storable write for the outcome from `worker_id` (an unstorable one becomes a failed
    attempt saying why). Call only when a result is set."""
    kind = o.WhichOneof("result")
    if kind == "completed":
        try:
            result = validation.check_payload(
                o.completed.result_json, "result_json", limits.result_bytes
            )
        except InvalidArgument as exc:  # not storable: a failed attempt, not a stuck run
            error = ErrorInfo("InvalidResult", f"the handler's return value: {exc}", "")
            return OutcomeWrite(ref, OutcomeKind.FAILED, error=error, retryable=False,
                                worker_id=worker_id)
        return OutcomeWrite(ref, OutcomeKind.COMPLETED, result_json=result, worker_id=worker_id)
    if kind == "failed":
        pb = o.failed.error
        cut = limits.error_bytes
        error = ErrorInfo(
            validation.sanitize(pb.type, limits.name_length) or "Error",
            validation.sanitize(pb.message, cut),
            validation.sanitize(pb.traceback, cut),
        )
        return OutcomeWrite(ref, OutcomeKind.FAILED, error=error, retryable=o.failed.retryable,
                            worker_id=worker_id)
    run_at = None
    if o.released.HasField("run_at"):
        at = o.released.run_at
        try:
            run_at = validation.check_time(at.seconds, at.nanos, "released.run_at")
        except InvalidArgument as exc:
            error = ErrorInfo("InvalidOutcome", f"the worker's release: {exc}", "")
            return OutcomeWrite(ref, OutcomeKind.FAILED, error=error, retryable=True,
                                worker_id=worker_id)
    reason = _RELEASE_REASONS.get(o.released.reason, "unspecified")
    return OutcomeWrite(ref, OutcomeKind.RELEASED, run_at=run_at, reason=reason,
                        worker_id=worker_id)


@dataclass(frozen=True)
class RefusedOutcome(OutcomeAck):
    """An outcome answered without a write: ids as the worker sent them (they may not parse),
    stale (malformed id or token) or invalid (no result set)."""

    execution_id: str
    token: str
    status: worker_pb2.WriteStatus.ValueType


_RELEASE_REASONS = {
    worker_pb2.RELEASE_REASON_SHUTDOWN: "shutdown",
    worker_pb2.RELEASE_REASON_WINDOW: "window",
    worker_pb2.RELEASE_REASON_SLEEP: "sleep",
    worker_pb2.RELEASE_REASON_UNAVAILABLE: "unavailable",
    worker_pb2.RELEASE_REASON_CANCELLED: "cancelled",
    worker_pb2.RELEASE_REASON_WAITING: "waiting",
    worker_pb2.RELEASE_REASON_PROCESS_STOPPED: "process_stopped",
    worker_pb2.RELEASE_REASON_RATE_LIMITED: "rate_limited",
}


class WorkerService(worker_pb2_grpc.WorkerServiceServicer):
    """The worker stream: registration, then writes in and leases and acks out."""

    def __init__(self, dispatcher: Dispatcher, scheduler: Scheduler, settings: Settings) -> None:
        self.dispatcher = dispatcher
        self.scheduler = scheduler
        self.settings = settings
        self.streams: set[Session] = set()

    async def Connect(  # noqa: N802
        self,
        request_iterator: AsyncIterator[worker_pb2.WorkerMessage],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[worker_pb2.CoordinatorMessage]:
        first = await self._first_message(request_iterator, context)
        if first is None or first.WhichOneof("kind") != "register":
            raise InvalidArgument("register", "the first message of a stream must be Register")
        session, lost = await self._register(first.register)
        reader = asyncio.create_task(self._read(request_iterator, session))
        try:
            yield worker_pb2.CoordinatorMessage(
                registered=worker_pb2.Registered(
                    heartbeat_interval_seconds=self.settings.heartbeat_interval,
                    lease_timeout_seconds=self.settings.lease_timeout,
                    max_step_result_bytes=self.settings.max_step_result_bytes,
                    max_steps_bytes=self.settings.max_steps_bytes,
                    max_result_bytes=self.settings.max_result_bytes,
                    max_message_bytes=self.settings.message_limit,
                    lost_leases=[
                        worker_pb2.LeaseRef(execution_id=str(r.execution_id), lease_token=r.token)
                        for r in lost
                    ],
                )
            )
            closed = False
            while not closed:
                batch, closed = await _drain(session.outbox)
                for message in batch:
                    for part in _split_leases(message):
                        yield outgoing_to_pb(part)
            if session.failure is not None:  # the status tells the worker why (UNAVAILABLE)
                raise session.failure
        finally:
            self.streams.discard(session)
            reader.cancel()
            await self.dispatcher.disconnect(session)

    async def _first_message(
        self,
        requests: AsyncIterator[worker_pb2.WorkerMessage],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> worker_pb2.WorkerMessage | None:
        """The Register, or the stream is closed after register_timeout seconds."""
        timeout = self.settings.register_timeout
        try:
            return await asyncio.wait_for(anext(aiter(requests), None), timeout)
        except TimeoutError:
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED, f"no Register within {timeout:g} seconds"
            )
            raise  # abort raises; this keeps type checkers informed

    async def _register(self, register: worker_pb2.Register) -> tuple[Session, list[LeaseRef]]:
        """All or nothing: everything is validated first, and the session is visible to
        leasing only once every write succeeded (see Dispatcher.connect)."""
        session = register_from_pb(register, self.settings.limits)
        held = [
            ref
            for h in register.held_leases
            if (ref := _lease_ref(h.execution_id, h.lease_token)) is not None
        ]
        static = self.scheduler.static_schedules(session.tasks.values())
        async def before_visible() -> None:
            await self.scheduler.sync_static(static)
            await WorkflowStore(self.dispatcher.store.pool).sync_subscriptions(
                session.tasks.values()
            )

        lost = await self.dispatcher.connect(session, held, before_visible=before_visible)
        self.streams.add(session)
        log.info("worker %s connected with tasks %s", register.worker_id, sorted(session.tasks))
        return session, lost

    async def _read(
        self, requests: AsyncIterator[worker_pb2.WorkerMessage], session: Session
    ) -> None:
        handlers: dict[str, Callable[[Any, Session], Awaitable[None]]] = {
            "heartbeat": self._on_heartbeat,
            "step_saves": self._on_step_saves,
            "outcomes": self._on_outcomes,
            "stop_leasing": self._on_stop_leasing,
            "clock_synced": self._on_clock_synced,
            "capacity": self._on_capacity,
            "log_lines": self._on_log_lines,
        }
        pending: set[asyncio.Task[None]] = set()
        try:
            async for message in requests:
                session.heard()
                kind = message.WhichOneof("kind")
                if kind == "run_states":  # in order, before whatever follows it
                    self._on_run_states(message.run_states, session)
                    continue
                handler = handlers.get(kind or "")
                if handler is None:
                    log.warning("worker %s sent unexpected %s", session.worker_id, kind)
                    continue
                task = asyncio.create_task(
                    self._handle(handler, getattr(message, kind or ""), session)
                )
                pending.add(task)
                task.add_done_callback(pending.discard)
        except (asyncio.CancelledError, grpc.aio.AioRpcError):
            pass
        except Exception:
            log.exception("worker %s stream failed", session.worker_id)
        finally:
            session.close()

    async def _handle(
        self,
        handler: Callable[[Any, Session], Awaitable[None]],
        message: Any,
        session: Session,
    ) -> None:
        try:
            await handler(message, session)
        except Exception as exc:
            # Nothing of the message was acknowledged. End the stream: the worker reconnects
            # and resends every write it holds unacknowledged (e.g. after a database error),
            # rather than waiting for answers that never come.
            log.exception("worker %s: handling a message failed; closing its stream",
                          session.worker_id)
            session.close(failure=exc)

    async def _on_heartbeat(self, message: worker_pb2.Heartbeat, session: Session) -> None:
        await self.dispatcher.heartbeat(session, _lease_refs(message.leases))

    async def _on_step_saves(self, message: worker_pb2.StepSaves, session: Session) -> None:
        writes: list[StepWrite] = []
        refused: list[StepAck] = []  # stale tokens and invalid saves: answered, not written
        limits = self.settings.limits
        for item in message.items:
            ref = _lease_ref(item.execution_id, item.lease_token)
            if ref is None:
                refused.append(StepAck(item.execution_id, item.name, None, token=item.lease_token))
                continue
            try:
                validation.check_text(item.name, "name", limits.name_length)
                result = validation.check_payload(
                    item.result_json, "result_json", limits.step_result_bytes
                )
            except InvalidArgument as exc:
                refused.append(
                    StepAck(item.execution_id, item.name, None, str(exc), item.lease_token)
                )
                continue
            writes.append(
                StepWrite(ref.execution_id, ref.token, item.name, result, session.worker_id)
            )
        if refused:
            session.send(refused)
        if writes:
            await self.dispatcher.save_steps(session, writes)

    async def _on_outcomes(self, message: worker_pb2.Outcomes, session: Session) -> None:
        writes: list[OutcomeWrite] = []
        refused: list[OutcomeAck] = []
        limits = self.settings.limits
        for item in message.items:
            ref = _lease_ref(item.execution_id, item.lease_token)
            status = _STALE if ref is None else _INVALID
            if ref is None or item.WhichOneof("result") is None:
                refused.append(
                    RefusedOutcome(_NO_LEASE, False, "", None, item.execution_id,
                                   item.lease_token, status)
                )
                continue
            writes.append(outcome_from_pb(item, ref, limits, session.worker_id))
        if refused:
            session.send(refused)
        if writes:
            await self.dispatcher.apply_outcomes(session, writes)

    def _on_run_states(self, message: worker_pb2.RunStates, session: Session) -> None:
        waiting, started = _lease_refs(message.waiting), _lease_refs(message.started)
        session.run_states(waiting, started)
        self.dispatcher.deadlines.run_states(session, waiting, started)

    async def _on_stop_leasing(self, message: worker_pb2.StopLeasing, session: Session) -> None:
        self.dispatcher.stop_leasing(session)

    async def _on_capacity(self, message: worker_pb2.CapacityUpdate, session: Session) -> None:
        self.dispatcher.set_capacity(session, [(i.task, i.capacity) for i in message.items])

    async def _on_log_lines(self, message: worker_pb2.LogLines, session: Session) -> None:
        """Keep the lines of executions this worker holds (others are dropped unanswered:
        log lines are best effort)."""
        now = self.dispatcher.clock.now()
        lines = [line for item in message.items
                 if (line := log_line_from_pb(item, session, self.settings, now)) is not None]
        try:
            async with session.log_lines:  # taken at once, in message order (no await before)
                await self.dispatcher.store.insert_log_lines(lines, self.settings.max_log_lines)
        except Exception:  # nothing to resend: the stream stays open, the lines are dropped
            log.warning("worker %s: %d log lines dropped (database error)", session.worker_id,
                        len(lines), exc_info=log.isEnabledFor(logging.DEBUG))

    async def _on_clock_synced(self, message: worker_pb2.ClockSynced, session: Session) -> None:
        self.dispatcher.clock_synced(session, message.sequence)


