"""The worker: one stream to the coordinator, heartbeats, pools, reconnects, shutdown.

The main process does all network I/O. Leases arrive on the stream and go to the pool of
their task; step saves and outcomes from the pools go up the stream, batched, and are kept
until the coordinator acknowledges them, so a reconnect resends whatever was not yet durable.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import importlib
import json
import logging
import os
import random
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from conductor.v1 import common_pb2, worker_pb2, worker_pb2_grpc

from . import child as child_module
from . import flow, preload, tracing
from . import metrics as worker_metrics
from .client import Client
from .connection import Connection
from .context import RunKey, RunSpec
from .errors import TaskDefinitionError
from .lifecycle import Run
from .pool import Pool, pool_groups
from .settings import PoolSettings
from .task import Task, TaskOptions, check_registrable, registered
from .window import LeaseWindow

log = logging.getLogger(__name__)

RECONNECT_MIN = 0.1
#: the longest wait between reconnection attempts (so a healed network is found within ~1 s)
RECONNECT_MAX = 1.0
#: seconds the coordinator may take to answer Register
REGISTER_TIMEOUT = 15.0
#: heartbeat intervals without any message from the coordinator before the stream is given up
SILENCE_INTERVALS = 2.0
BUSY_HELD = 16  # leases held above which the worker counts as busy
BUSY_BATCH_WAIT = 0.002  # seconds a busy worker lets results gather before sending
#: seconds new step saves wait at most for the previous batch's acknowledgement
STEP_GATHER_MAX = 0.005
#: step saves that go at once even while an earlier batch is unacknowledged
STEP_BATCH_ALONE = 16
#: seconds between announcements of the leases waiting for a pool process (RunStates): a
#: lease that waits less is never announced, so it counts as started if the worker dies
#: (short runs stream through without any notice)
ANNOUNCE_EVERY = 0.25
#: seconds a stopping worker waits at most for the answer to StopLeasing (LeasingStopped)
STOP_ANSWER_WAIT = 5.0
#: step saves whose answer was handed to a pool process lately, kept to tell where a save
#: that a pool process sends again was lost (see Worker._resent)
ANSWERED_KEPT = 4096
#: answers that reconnecting cannot fix: the worker stops with exit code 1
REFUSED = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAUTHENTICATED)

_RELEASE_REASONS = {
    "unavailable": worker_pb2.RELEASE_REASON_UNAVAILABLE,
    "shutdown": worker_pb2.RELEASE_REASON_SHUTDOWN,
    "window": worker_pb2.RELEASE_REASON_WINDOW,
    "sleep": worker_pb2.RELEASE_REASON_SLEEP,
    "cancelled": worker_pb2.RELEASE_REASON_CANCELLED,
    "waiting": worker_pb2.RELEASE_REASON_WAITING,
    "process_stopped": worker_pb2.RELEASE_REASON_PROCESS_STOPPED,
    "rate_limited": worker_pb2.RELEASE_REASON_RATE_LIMITED,
}


@dataclass
class _Held:
    """A lease this worker holds until the coordinator acknowledges its outcome."""

    task: str
    abandoned: bool = False
    #: bytes of step results the execution has recorded (from its lease) or sent since
    steps_bytes: int = 0
    #: what its lifecycle log lines say (None: released without running)
    run: Run | None = None
    #: its span, when the execution is traced (tracing.py)
    trace: tracing.LeaseTrace | None = None


@dataclass
class _PendingStep:
    """A step save sent up the stream (or waiting for one) and not yet acknowledged."""

    save: worker_pb2.StepSave
    #: time.monotonic() when it last went up a stream (None: not yet, no stream since)
    written: float | None = None


def load_tasks(target: str | ModuleType | Iterable[Task[..., Any]]) -> list[Task[..., Any]]:
    """The tasks of a module (imported by name) or an explicit list, checked for registration."""
    if isinstance(target, str | ModuleType):
        module = importlib.import_module(target) if isinstance(target, str) else target
        tasks = [t for t in registered().values() if t.__module__ == module.__name__]
        tasks += [
            v for v in vars(module).values() if isinstance(v, Task) and v not in tasks
        ]
        if not tasks:
            raise TaskDefinitionError(f"module {module.__name__!r} defines no @task")
    else:
        tasks = list(target)
    names = [t.name for t in tasks]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise TaskDefinitionError(f"task names used twice: {duplicates}")
    for t in tasks:
        check_registrable(t)
    return tasks


class Worker:
    """Runs tasks for a coordinator until stopped (SIGTERM/SIGINT or `stop()`)."""

    def __init__(
        self,
        tasks: str | ModuleType | Iterable[Task[..., Any]],
        server: str | None = None,
        *,
        worker_id: str | None = None,
        drain_timeout: float = 60.0,
        log_level: int = logging.INFO,
        log_format: str = "text",
        on_connected: Callable[[], None] | None = None,
        drain: bool = False,
        token: str | None = None,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        metrics_port: int | None = None,
        pool_settings: PoolSettings | None = None,
        queues: Iterable[str] | None = None,
    ) -> None:
        self.tasks = {t.name: t for t in load_tasks(tasks)}
        #: take work only from these queues (None: from every queue)
        self.queues = _check_queues(queues)
        self.pool_settings = pool_settings or PoolSettings.resolve()
        #: the pools' tasks by pool name (checked here, so that a bad pool fails at once)
        self.pool_groups = pool_groups(list(self.tasks.values()))
        self.connection = Connection.resolve(
            server, token=token, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key
        )
        self.server = self.connection.address
        self.metrics_port = metrics_port
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.drain_timeout = drain_timeout
        self.log_level = log_level
        #: "text" or "json": how the pool processes write their log lines
        self.log_format = log_format
        self.on_connected = on_connected
        self.drain_mode = drain
        #: every task's pool, by task name (the tasks of a shared pool share one)
        self.pools: dict[str, Pool] = {}
        #: each pool once
        self.pool_list: list[Pool] = []
        #: adaptive lease windows of the tasks without an explicit prefetch
        self.windows = {
            name: LeaseWindow(t.options.slots)
            for name, t in self.tasks.items()
            if t.options.adaptive
        }
        #: every lease held, by run key (execution id, token), until its outcome is acked
        self.held: dict[RunKey, _Held] = {}
        #: the newest lease token of each execution held (cancel and release requests name
        #: executions; an older lease of one is abandoned as soon as a newer one arrives)
        self.tokens: dict[str, str] = {}
        self.unacked: dict[RunKey, worker_pb2.Outcome] = {}
        #: leases queued in a pool (not handed to a process yet): not yet announced to the
        #: coordinator, and announced (see ANNOUNCE_EVERY and RunStates)
        self._queued: set[RunKey] = set()
        self._waiting: set[RunKey] = set()
        self.pending_steps: dict[tuple[RunKey, str], _PendingStep] = {}
        #: when each step save acknowledged lately was answered to its pool process
        #: (time.monotonic(); the ANSWERED_KEPT latest)
        self._answered: dict[tuple[RunKey, str], float] = {}
        #: time.monotonic() when the coordinator was last heard from on the current stream
        self._last_heard = 0.0
        #: the lease timeout the coordinator announced, and when the heartbeats that are not
        #: yet acknowledged were sent (time.monotonic())
        self._lease_seconds = 0.0
        self._heartbeats_sent: collections.deque[float] = collections.deque()
        self._registered = False
        self._registered_msg = worker_pb2.Registered()
        self._register_sent = 0.0
        self._limits = _Limits()
        self._clock_syncs: set[asyncio.Task[None]] = set()
        #: step saves sent on the current stream and not yet acknowledged
        self._steps_in_flight = 0
        self._steps_landed = asyncio.Event()
        self._calls: set[asyncio.Task[None]] = set()
        self._client: Client | None = None
        self._outbox: asyncio.Queue[worker_pb2.WorkerMessage | tuple[str, Any]] | None = None
        self._stopping = False
        #: no lease can arrive any more: the coordinator answered StopLeasing on this stream,
        #: there is no stream, or the answer took longer than STOP_ANSWER_WAIT
        self._leasing_stopped = False
        self.exit_code = 0
        self._stop_requested: asyncio.Event | None = None
        self._abort: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None

    # -- public -------------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped; returns the exit status (0 after a graceful stop)."""
        return asyncio.run(self.run_async())

    async def run_async(self) -> int:
        self._stop_requested = asyncio.Event()
        self._steps_landed = asyncio.Event()
        self._abort = asyncio.Event()
        self._idle = asyncio.Event()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        metrics_folder = None
        if self.metrics_port is not None:
            port, metrics_folder = worker_metrics.enable(self.metrics_port)
            log.info("metrics on port %d", port)
        self._start_pools()
        connection = asyncio.create_task(self._connection_loop(), name="connection")
        try:
            await self._stop_requested.wait()
            await self._shutdown()
        finally:
            connection.cancel()
            await asyncio.gather(connection, return_exceptions=True)
            await asyncio.gather(*(p.stop() for p in self.pool_list))
            if self._client is not None:
                self._client.close()
            if metrics_folder is not None:
                worker_metrics.disable(metrics_folder)
        return self.exit_code

    def _start_pools(self) -> None:
        """Create the pools (each starts only its `min_processes` now) and the fork server
        that preloads the task modules, while the worker connects."""
        method = self.pool_settings.start_method
        preload.context(method, [t.__module__ for t in self.tasks.values()])
        preload.start(method)
        for name, members in self.pool_groups.items():
            pool = Pool(
                members,
                functools.partial(self._on_pool_message, members[0].name),
                name=name,
                settings=self.pool_settings,
                log_level=self.log_level,
                log_format=self.log_format,
                on_handed=self._on_handed,
            )
            self.pool_list.append(pool)
            for t in members:
                self.pools[t.name] = pool
            pool.start()

    def drain(self) -> int:
        """Run everything of this worker's tasks that is runnable now, then return.

        For tests: invoke, then `Worker(tasks, server).drain()`, then check the results.
        Executions waiting for a later run time (a retry's backoff, a delay, a closed window,
        ctx.sleep) are not runnable now and are left pending.
        """
        self.drain_mode = True
        return self.run()

    def stop(self) -> None:
        """Begin a graceful stop; a second call releases everything at once."""
        assert self._stop_requested is not None and self._abort is not None
        if self._stop_requested.is_set():
            log.warning("second stop signal: releasing every execution now")
            self._abort.set()
        else:
            log.info("stopping: no new leases; running executions release at their next checkpoint")
            self._stop_requested.set()

    # -- shutdown -----------------------------------------------------------------------

    async def _shutdown(self) -> None:
        assert self._abort is not None and self._idle is not None
        self._stopping = True
        self._leasing_stopped = self._outbox is None  # without a stream nothing can arrive
        self._send(worker_pb2.WorkerMessage(stop_leasing=worker_pb2.StopLeasing()))
        asyncio.get_running_loop().call_later(STOP_ANSWER_WAIT, self._on_leasing_stopped, None)
        for pool in self.pool_list:
            pool.shutdown()
        self._check_idle()
        idle = asyncio.create_task(self._idle.wait())
        abort = asyncio.create_task(self._abort.wait())
        done, _ = await asyncio.wait(
            {idle, abort}, timeout=self.drain_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if idle not in done:
            await self._release_everything()
        idle.cancel()
        abort.cancel()

    async def _release_everything(self) -> None:
        """Drain timeout or second signal: stop the handlers and release all held leases."""
        assert self._idle is not None
        for pool in self.pool_list:
            pool.kill()
        for key, held in list(self.held.items()):
            if key not in self.unacked and not held.abandoned:
                self._outcome(key, released=worker_pb2.Released(
                    reason=worker_pb2.RELEASE_REASON_SHUTDOWN))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout=10)

    def _check_idle(self) -> None:
        """Stopping, idle once nothing is held and no lease can still arrive: one already
        on its way when StopLeasing was sent is released when it arrives, never left to
        expire unread (which would count an attempt)."""
        if self._stopping and not self.held and self._leasing_stopped and self._idle is not None:
            self._idle.set()

    def _on_leasing_stopped(self, _: worker_pb2.LeasingStopped | None) -> None:
        """The coordinator answered StopLeasing (or STOP_ANSWER_WAIT passed)."""
        self._leasing_stopped = True
        self._check_idle()

    # -- the stream ---------------------------------------------------------------------

    async def _connection_loop(self) -> None:
        delay = RECONNECT_MIN
        while True:
            self._registered = False
            wait = delay * random.uniform(0.5, 1.0)  # jitter: workers do not return in step
            try:
                async with self.connection.aio_channel() as channel:
                    await self._session(worker_pb2_grpc.WorkerServiceStub(channel))
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as exc:
                if exc.code() in REFUSED:
                    log.error("the coordinator refused this worker: %s", exc.details())
                    self.exit_code = 1
                    self.stop()
                    return
                log.warning("coordinator %s: %s; reconnecting in %.1fs", self.server,
                            exc.code().name, wait)
            except ConnectionError as exc:
                log.warning("coordinator %s: %s; reconnecting in %.1fs", self.server, exc, wait)
            except Exception:
                log.exception("worker stream failed; reconnecting in %.1fs", wait)
            self._outbox = None
            self._on_leasing_stopped(None)  # no stream: no lease can arrive
            await asyncio.sleep(wait)
            # a stream that registered was a success: the next cut starts from the minimum
            delay = RECONNECT_MIN if self._registered else min(delay * 2, RECONNECT_MAX)

    def _register_message(self) -> worker_pb2.WorkerMessage:
        return worker_pb2.WorkerMessage(
            register=worker_pb2.Register(
                worker_id=self.worker_id,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                tasks=[self._definition(t) for t in self.tasks.values()],
                held_leases=[
                    worker_pb2.LeaseRef(execution_id=eid, lease_token=token)
                    for (eid, token), h in self.held.items()
                    if not h.abandoned
                ],
                drain=self.drain_mode,
                queues=self.queues or (),
            )
        )

    def _definition(self, t: Task[..., Any]) -> worker_pb2.TaskDefinition:
        """A task's registration, with its current adaptive lease window."""
        definition = task_definition(t)
        window = self.windows.get(t.name)
        if window is not None:
            definition.capacity = window.current
        return definition

    async def _session(self, stub: worker_pb2_grpc.WorkerServiceAsyncStub) -> None:
        call = stub.Connect(metadata=self.connection.metadata)
        try:
            await asyncio.wait_for(self._register(call), REGISTER_TIMEOUT)
        except TimeoutError:
            call.cancel()
            raise ConnectionError(
                f"no answer to Register within {REGISTER_TIMEOUT:.0f}s"
            ) from None
        registered_msg = self._registered_msg
        self._registered = True
        self._leasing_stopped = False  # a new stream: leases may come until it answers
        self._lease_seconds = registered_msg.lease_timeout_seconds
        self._limits = _Limits.announced(registered_msg)
        self._heartbeats_sent.clear()
        self._renewed(self._register_sent, None)
        for ref in registered_msg.lost_leases:
            self._abandon((ref.execution_id, ref.lease_token))
        outbox: asyncio.Queue[worker_pb2.WorkerMessage | tuple[str, Any]] = asyncio.Queue()
        self._outbox = outbox
        self._steps_in_flight = 0  # a new stream: whatever was unacknowledged is resent below
        if self._stopping:
            self._send(worker_pb2.WorkerMessage(stop_leasing=worker_pb2.StopLeasing()))
            asyncio.get_running_loop().call_later(
                STOP_ANSWER_WAIT, self._on_leasing_stopped, None)
        for key in self._waiting:
            outbox.put_nowait(("waiting", _ref(key)))
        for pending in self.pending_steps.values():
            outbox.put_nowait(("step", pending.save))
        for outcome in self.unacked.values():
            outbox.put_nowait(("outcome", outcome))
        log.info("connected to %s as %s", self.server, self.worker_id)
        if self.on_connected is not None:
            self.on_connected()
            self.on_connected = None
        interval = registered_msg.heartbeat_interval_seconds
        tasks = [
            asyncio.create_task(self._sender(call, outbox)),
            asyncio.create_task(self._heartbeats(interval)),
            asyncio.create_task(self._announce_waiting()),
        ]
        reader = asyncio.create_task(self._read(call))
        watchdog = asyncio.create_task(self._watchdog(interval))
        try:
            done, _ = await asyncio.wait({reader, watchdog}, return_when=asyncio.FIRST_COMPLETED)
            for finished in done:
                finished.result()  # raises what ended the stream
        finally:
            # Give the stream up for good: whatever it still delivers (leases that arrive
            # late after a stall) is never read, so it can never start running.
            call.cancel()
            for t in [*tasks, reader, watchdog]:
                t.cancel()
            await asyncio.gather(*tasks, reader, watchdog, return_exceptions=True)
        raise ConnectionError("coordinator closed the stream")

    async def _register(
        self,
        call: grpc.aio.StreamStreamCall[worker_pb2.WorkerMessage, worker_pb2.CoordinatorMessage],
    ) -> None:
        self._register_sent = time.monotonic()
        await call.write(self._register_message())
        first = await call.read()
        if not isinstance(first, worker_pb2.CoordinatorMessage) or (
            first.WhichOneof("kind") != "registered"
        ):
            raise ConnectionError("coordinator did not answer Register")
        self._registered_msg = first.registered
        self._last_heard = time.monotonic()

    async def _read(
        self,
        call: grpc.aio.StreamStreamCall[worker_pb2.WorkerMessage, worker_pb2.CoordinatorMessage],
    ) -> None:
        while isinstance(message := await call.read(), worker_pb2.CoordinatorMessage):
            self._last_heard = time.monotonic()
            self._on_coordinator_message(message)

    async def _watchdog(self, interval: float) -> None:
        """End the stream when the coordinator has been silent for about two heartbeat
        intervals (it answers every heartbeat), e.g. a connection that died without a reset."""
        limit = SILENCE_INTERVALS * interval
        while True:
            await asyncio.sleep(interval / 4)
            silent = time.monotonic() - self._last_heard
            if silent > limit:
                worker_metrics.metrics().stream_silences.inc()
                raise ConnectionError(f"no message from the coordinator for {silent:.1f}s")

    async def _sender(
        self,
        call: grpc.aio.StreamStreamCall[worker_pb2.WorkerMessage, worker_pb2.CoordinatorMessage],
        outbox: asyncio.Queue[worker_pb2.WorkerMessage | tuple[str, Any]],
    ) -> None:
        while True:
            items = [await outbox.get()]
            await asyncio.sleep(0)  # let whatever is ready on the loop join this message
            while not outbox.empty():
                items.append(outbox.get_nowait())
            steps = sum(1 for i in items if _is_step(i))
            if steps == 0 and len(self.held) > BUSY_HELD:
                # Busy (a backlog of leases) with only outcomes to send: wait a moment so that
                # more of them share a message and the coordinator's group commit.
                await asyncio.sleep(BUSY_BATCH_WAIT)
            elif 0 < steps < STEP_BATCH_ALONE and self._steps_in_flight:
                # A handler waits on each step save, but while the last batch of saves is
                # being committed a few more could only queue behind it at the coordinator:
                # gather them until it is acknowledged (bounded), then send them as one.
                # (Plain handlers produce saves one by one; async runs in bursts.)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._steps_landed.wait(), STEP_GATHER_MAX)
            while not outbox.empty():
                items.append(outbox.get_nowait())
            steps = sum(1 for i in items if _is_step(i))
            if steps:
                self._steps_in_flight += steps
                self._steps_landed.clear()
            for message in _coalesce(items, self._limits.message_budget):
                await call.write(message)
                if message.HasField("step_saves"):
                    self._written(message.step_saves.items)

    def _written(self, saves: Iterable[worker_pb2.StepSave]) -> None:
        """These step saves went up the stream just now."""
        now = time.monotonic()
        for save in saves:
            pending = self.pending_steps.get(((save.execution_id, save.lease_token), save.name))
            if pending is not None:
                pending.written = now

    async def _heartbeats(self, interval: float) -> None:
        """One heartbeat at once (its answer also bounds the coordinator's clock), then one
        per interval."""
        while True:
            self._heartbeat()
            await asyncio.sleep(interval)

    def _heartbeat(self) -> None:
        worker_metrics.metrics().leases.set(len(self.held))
        self._heartbeats_sent.append(time.monotonic())
        self._send(
            worker_pb2.WorkerMessage(
                heartbeat=worker_pb2.Heartbeat(
                    leases=[
                        worker_pb2.LeaseRef(execution_id=eid, lease_token=token)
                        for (eid, token), h in self.held.items()
                        if not h.abandoned
                    ]
                )
            )
        )

    async def _announce_waiting(self) -> None:
        """Tell the coordinator which leases have waited in a pool for a while without
        starting, so that they cost no attempt if this worker dies (RunStates)."""
        while True:
            await asyncio.sleep(ANNOUNCE_EVERY)
            for key in self._queued:
                self._send(("waiting", _ref(key)))
            self._waiting |= self._queued
            self._queued.clear()

    def _on_handed(self, key: RunKey) -> None:
        """A pool hands a queued run to a process: announced as waiting, it is announced as
        started first."""
        self._queued.discard(key)
        if key in self._waiting:
            self._waiting.discard(key)
            self._send(("started", _ref(key)))

    def _send(self, item: worker_pb2.WorkerMessage | tuple[str, Any]) -> None:
        if self._outbox is not None:
            self._outbox.put_nowait(item)

    # -- from the coordinator -----------------------------------------------------------

    def _on_coordinator_message(self, message: worker_pb2.CoordinatorMessage) -> None:
        kind = message.WhichOneof("kind")
        handler = self._HANDLERS.get(kind or "")
        if handler is not None:
            handler(self, getattr(message, kind or ""))

    def _on_cancel_requests(self, requests: worker_pb2.CancelRequests) -> None:
        for eid in requests.execution_ids:
            self._interrupt(eid, "cancelled")

    def _on_release_requests(self, requests: worker_pb2.ReleaseRequests) -> None:
        for request in requests.items:
            self._interrupt(request.execution_id, "window", _epoch(request.run_at))

    def _on_heartbeat_ack(self, ack: worker_pb2.HeartbeatAck) -> None:
        for ref in ack.lost_leases:
            self._abandon((ref.execution_id, ref.lease_token))
        if self._heartbeats_sent:  # the oldest one (acks of concurrent ones may swap)
            sent = self._heartbeats_sent.popleft()
            bound = None
            if ack.HasField("coordinator_time"):  # read between `sent` and now
                now = time.monotonic()
                bound = (_epoch(ack.coordinator_time) + (now - sent), now)
            self._renewed(sent, bound)

    def _on_drained(self, drained: worker_pb2.Drained) -> None:
        log.info("drained: nothing runnable is left")
        self.stop()

    #: one handler per CoordinatorMessage kind ("registered" comes only first)
    _HANDLERS: dict[str, Callable[[Worker, Any], None]] = {
        "leases": lambda w, m: w._on_leases(m),
        "step_acks": lambda w, m: w._on_step_acks(m),
        "outcome_acks": lambda w, m: w._on_outcome_acks(m),
        "cancel_requests": lambda w, m: w._on_cancel_requests(m),
        "release_requests": lambda w, m: w._on_release_requests(m),
        "heartbeat_ack": lambda w, m: w._on_heartbeat_ack(m),
        "clock_sync": lambda w, m: w._sync_clock(m),
        "drained": lambda w, m: w._on_drained(m),
        "leasing_stopped": lambda w, m: w._on_leasing_stopped(m),
    }

    def _renewed(self, sent: float, bound: tuple[float, float] | None) -> None:
        """The coordinator renewed every listed lease after `sent`: tell the pool processes
        until when their runs may start steps without asking again, and the latest time the
        coordinator's clock can show (a run's window must never be seen closing late)."""
        until = sent + self._lease_seconds
        for pool in self.pool_list:
            pool.renewed(until, bound)

    def _sync_clock(self, sync: worker_pb2.ClockSync) -> None:
        """Hand the coordinator's jumped clock to every pool process, then confirm."""
        now = _epoch(sync.coordinator_time)
        sequence = sync.sequence
        futures = [pool.sync_clock(now, sequence) for pool in self.pool_list]
        self._heartbeat()  # the sync's time is behind by its transit; the answer bounds it

        async def confirm() -> None:
            await asyncio.gather(*futures)
            self._send(worker_pb2.WorkerMessage(
                clock_synced=worker_pb2.ClockSynced(sequence=sequence)))

        task = asyncio.create_task(confirm())
        self._clock_syncs.add(task)
        task.add_done_callback(self._clock_syncs.discard)

    def _on_leases(self, leases: worker_pb2.Leases) -> None:
        received = time.monotonic()
        for lease in leases.items:
            pool = self.pools.get(lease.task)
            key = (lease.execution_id, lease.lease_token)
            older = self.tokens.get(lease.execution_id)
            if older is not None and older != lease.lease_token:
                # Re-leased while an old run may still be winding down here (a cut longer
                # than the lease timeout): the old lease is gone, so that run is abandoned.
                self._abandon((lease.execution_id, older))
            self.tokens[lease.execution_id] = lease.lease_token
            held = self.held[key] = _Held(
                lease.task,
                steps_bytes=_steps_bytes(lease.steps),
                trace=tracing.start_lease(
                    lease.trace_context, lease.task, lease.execution_id, lease.attempt
                ),
            )
            if pool is None or self._stopping:
                self._outcome(key, released=worker_pb2.Released(
                    reason=worker_pb2.RELEASE_REASON_SHUTDOWN if self._stopping
                    else worker_pb2.RELEASE_REASON_UNAVAILABLE))
                continue
            coordinator_time = _epoch(lease.coordinator_time)
            held.run = Run(lease.execution_id, lease.task, lease.attempt, lease.max_attempts,
                           steps=len(lease.steps), clock_offset=coordinator_time - time.time())
            held.run.log_started()
            handed = pool.submit(
                RunSpec(
                    execution_id=lease.execution_id,
                    token=lease.lease_token,
                    task=lease.task,
                    attempt=lease.attempt,
                    max_attempts=lease.max_attempts,
                    payload_json=lease.payload_json,
                    steps=dict(lease.steps),
                    coordinator_time=coordinator_time,
                    received_monotonic=received,
                    schedule=lease.schedule or None,
                    fire_time=_epoch(lease.fire_time) if lease.HasField("fire_time") else None,
                    window_closes_at=_epoch(lease.window_closes_at)
                    if lease.HasField("window_closes_at")
                    else None,
                    window_reopens_at=_epoch(lease.window_reopens_at)
                    if lease.HasField("window_reopens_at")
                    else None,
                    lease_seconds=self._lease_seconds,
                    priority=lease.priority,
                    trace_context=lease.trace_context,
                    timeout=lease.timeout_seconds,
                )
            )
            if not handed:
                self._queued.add(key)

    def _on_step_acks(self, acks: worker_pb2.StepAcks) -> None:
        self._steps_in_flight = max(0, self._steps_in_flight - len(acks.items))
        if not self._steps_in_flight:
            self._steps_landed.set()
        answers: dict[str, list[tuple[RunKey, str, str | None, str]]] = {}
        now = time.monotonic()
        for ack in acks.items:
            key, name = (ack.execution_id, ack.lease_token), ack.name
            self.pending_steps.pop((key, name), None)
            held = self.held.get(key)
            if held is None:
                continue
            self._answered[(key, name)] = now
            if len(self._answered) > ANSWERED_KEPT:
                del self._answered[next(iter(self._answered))]
            answer: tuple[RunKey, str, str | None, str]
            if ack.status == worker_pb2.WRITE_STATUS_OK:
                answer = (key, name, ack.result_json, "")
                if held.run is not None:
                    held.run.log_step(name)
            elif ack.status == worker_pb2.WRITE_STATUS_INVALID:  # the run fails at that step
                answer = (key, name, None, ack.error or "refused by the coordinator")
            else:
                held.abandoned = True
                answer = (key, name, None, "")
            answers.setdefault(held.task, []).append(answer)
        for task, items in answers.items():
            self.pools[task].step_acks(items)

    def _on_outcome_acks(self, acks: worker_pb2.OutcomeAcks) -> None:
        for ack in acks.items:
            key = (ack.execution_id, ack.lease_token)
            outcome = self.unacked.pop(key, None)
            if outcome is not None:
                held = self._drop(key)
                if ack.status != worker_pb2.WRITE_STATUS_OK:
                    log.warning("execution %s: outcome refused (lease lost)", ack.execution_id)
                elif held is not None and held.run is not None:
                    held.run.log_outcome(outcome, ack)
        self._check_idle()

    def _drop(self, key: RunKey) -> _Held | None:
        """Forget a lease (its outcome is acknowledged, or its run was abandoned)."""
        held = self.held.pop(key, None)
        self._queued.discard(key)
        self._waiting.discard(key)
        if self.tokens.get(key[0]) == key[1]:
            del self.tokens[key[0]]
        return held

    def _interrupt(self, execution_id: str, reason: str, run_at: float | None = None) -> None:
        """Ask the current run of an execution to let go at its next step or checkpoint."""
        token = self.tokens.get(execution_id)
        held = self.held.get((execution_id, token)) if token is not None else None
        if token is not None and held is not None:
            self.pools[held.task].interrupt((execution_id, token), reason, run_at)

    def _abandon(self, key: RunKey) -> None:
        """The lease is gone: its run stops at its next step or checkpoint, and a step save
        it waits for is answered at once (the run can never wait forever)."""
        held = self.held.get(key)
        if held is not None and not held.abandoned:
            held.abandoned = True
            self.pools[held.task].interrupt(key, "lost")

    # -- from the pools -----------------------------------------------------------------

    def _on_pool_message(self, task: str, message: tuple[Any, ...]) -> None:
        kind, key = message[0], message[1]
        held = self.held.get(key)
        if held is None:
            if kind == "step":  # never leave a run waiting, whatever happened to its lease
                self.pools[task].step_acks([(key, message[2], None, "")])
            return
        if kind == "log":
            self._on_log(key, *message[2:])
        elif kind == "call":
            call = asyncio.create_task(self._serve_call(held.task, *message[1:]))
            self._calls.add(call)
            call.add_done_callback(self._calls.discard)
        elif kind == "step":
            if len(message) > 4:  # sent again (child.STEP_RESEND)
                self._resent(key, message[2])
            self._on_step(held, key, message[2], message[3])
        elif kind == "trace":
            tracing.attempt(held.trace, message[2])
        else:
            self._on_run_ended(held, key, message)

    def _on_run_ended(self, held: _Held, key: RunKey, message: tuple[Any, ...]) -> None:
        """A run ended (or its lease was lost): report how, once."""
        kind = message[0]
        if held.abandoned or kind == "abandoned":
            tracing.end_lease(held.trace, "abandoned")
            self._drop(key)
            if held.run is not None:
                held.run.log_abandoned()
            for pending in [k for k in self.pending_steps if k[0] == key]:
                del self.pending_steps[pending]
            worker_metrics.metrics().executions.labels(held.task, "abandoned").inc()
            self._check_idle()
        elif kind == "done":
            self._on_done(key, message[2])
        elif kind == "error":
            _, _, etype, text, tb, retryable = message
            error = common_pb2.ErrorInfo(type=etype, message=text, traceback=tb)
            self._outcome(key, failed=worker_pb2.Failed(error=error, retryable=retryable))
        elif kind == "released":
            self._outcome(key, released=_released(message[2], message[3]))

    def _on_step(self, held: _Held, key: RunKey, name: str, result_json: str) -> None:
        """A run's step save: sent up the stream, or answered at once when it cannot be."""
        if held.abandoned:
            self.pools[held.task].step_acks([(key, name, None, "")])
            return
        if (pending := self.pending_steps.get((key, name))) is not None:
            # the pool process sent it again, its answer being late (child.STEP_RESEND): the
            # same save once more (idempotent), its size counted once
            self._send(("step", pending.save))
            return
        if too_big := self._limits.refuse(result_json, self._limits.step_result_bytes):
            self.pools[held.task].step_acks([(key, name, None, too_big)])
            return
        # sent again after its answer was handed over (the answer lost on the pipe): its size
        # was counted then
        total = held.steps_bytes + (0 if (key, name) in self._answered else len(result_json))
        if self._limits.steps_bytes and total > self._limits.steps_bytes:
            why = (f"steps: the execution's step results would total {total} bytes; the limit"
                   f" is {self._limits.steps_bytes} bytes")
            self.pools[held.task].step_acks([(key, name, None, why)])
            return
        held.steps_bytes = total
        save = worker_pb2.StepSave(
            execution_id=key[0], lease_token=key[1], name=name, result_json=result_json
        )
        self.pending_steps[(key, name)] = _PendingStep(save)
        self._send(("step", save))

    def _resent(self, key: RunKey, name: str) -> None:
        """A pool process sent a step save again, no answer having reached it within
        child.STEP_RESEND seconds (saves are answered in milliseconds): log where this process
        saw it last, which says where the save or its answer was lost."""
        pending = self.pending_steps.get((key, name))
        answered = self._answered.get((key, name))
        now = time.monotonic()
        if pending is not None and pending.written is None:
            log.info("execution %s: step %r sent again by its pool process; it waits for a"
                     " stream to the coordinator", key[0], name)
            return
        if pending is not None and pending.written is not None:
            where = (f"it went up the stream {now - pending.written:.1f}s ago and no answer came"
                     " back (lost on the stream, in the coordinator or on the way back, unless"
                     " the coordinator or this worker was frozen or overloaded meanwhile)")
        elif answered is not None:
            where = (f"its answer was handed to the pool process {now - answered:.1f}s ago"
                     " (lost between this process and the pool process, unless the two"
                     " crossed: a process frozen or overloaded meanwhile)")
        else:
            where = ("this process never had it (lost between the pool process and this"
                     " process)")
        log.warning("execution %s: step %r sent again by its pool process, no answer having"
                    " come within %gs: %s", key[0], name, child_module.STEP_RESEND, where)

    def _on_log(self, key: RunKey, attempt: int, level: str, text: str, at: float) -> None:
        """A ctx.logger line: up the stream, before the run's outcome (best effort)."""
        line = worker_pb2.LogLine(execution_id=key[0], attempt=attempt, level=level,
                                  message=text)
        line.logged_at.FromNanoseconds(int(at * 1e9))
        self._send(("log", line))

    def _on_done(self, key: RunKey, result_json: str) -> None:
        if too_big := self._limits.refuse(result_json, self._limits.result_bytes):
            error = common_pb2.ErrorInfo(
                type="InvalidResult", message=f"the handler's return value: {too_big}")
            self._outcome(key, failed=worker_pb2.Failed(error=error, retryable=False))
        else:
            self._outcome(key, completed=worker_pb2.Completed(result_json=result_json))

    def _count(self, task: str, result: dict[str, Any]) -> None:
        m = worker_metrics.metrics()
        kind = next(iter(result))
        outcome = {"completed": "succeeded", "failed": "failed"}.get(kind, kind)
        worker_metrics.labelled(m.executions, task, outcome).inc()
        if kind == "released":
            reason = _REASON_NAMES.get(result["released"].reason, "unspecified")
            worker_metrics.labelled(m.releases, task, reason).inc()

    async def _serve_call(
        self, task: str, key: RunKey, request_id: int, method: str, kwargs: dict[str, Any]
    ) -> None:
        """Run a client API call for a pool process (ctx.schedule, ctx.unschedule)."""
        try:
            value = await asyncio.to_thread(self._call_client, method, kwargs)
            answer: tuple[Any, ...] = ("call_result", request_id, True, value)
            held = self.held.get(key)
            if method == "workflow_wait" and value[0] is not None and held is not None:
                # a wait over at once (a signal sent before it): its outcome is a step of
                # the run now, counted toward the steps limit like a saved one
                held.steps_bytes += len(value[0])
        except Exception as exc:
            answer = ("call_result", request_id, False, f"{type(exc).__name__}: {exc}")
        self.pools[task].send_to(key, answer)

    def _call_client(self, method: str, kwargs: dict[str, Any]) -> Any:
        if self._client is None:
            self._client = Client(connection=self.connection)
        if method == "schedule":
            return self._client.schedule(**kwargs).to_dict()
        if method == "unschedule":
            return self._client.unschedule(**kwargs)
        if method == "workflow_wait":
            return self._client.workflow_wait(**kwargs)
        if method == "emit":
            return self._client.emit(**kwargs)
        raise ValueError(f"unknown call {method!r}")

    def _outcome(self, key: RunKey, **result: Any) -> None:
        """Report how a run ended; the first outcome of a lease wins (a child killed after
        its run was released must not also fail it)."""
        if key in self.unacked:
            return
        held = self.held[key]
        self._count(held.task, result)
        if held.trace is not None:
            failed = result.get("failed")
            tracing.end_lease(held.trace, next(iter(result)), failed.error.type if failed else "")
        outcome = worker_pb2.Outcome(execution_id=key[0], lease_token=key[1], **result)
        self.unacked[key] = outcome
        self._send(("outcome", outcome))
        window = self.windows.get(held.task)
        if window is not None and (size := window.completed()) is not None:
            self._send(worker_pb2.WorkerMessage(capacity=worker_pb2.CapacityUpdate(
                items=[worker_pb2.TaskCapacity(task=held.task, capacity=size)])))


_REASON_NAMES = {v: k for k, v in _RELEASE_REASONS.items()}


def _check_queues(queues: Iterable[str] | None) -> tuple[str, ...] | None:
    """Worker(queues=...): None or a non-empty list of queue names."""
    if queues is None:
        return None
    if isinstance(queues, str):
        queues = [queues]
    checked = tuple(queues)
    if not checked:
        raise TaskDefinitionError("queues: give at least one queue, or None for every queue")
    for q in checked:
        if problem := flow.name_problem(q, "queue"):
            raise TaskDefinitionError(f"queues: {problem}")
    return checked


def _released(reason: str, run_at: float | None) -> worker_pb2.Released:
    released = worker_pb2.Released(
        reason=_RELEASE_REASONS.get(reason, worker_pb2.RELEASE_REASON_UNSPECIFIED)
    )
    if run_at is not None:
        ts = Timestamp()
        ts.FromDatetime(datetime.fromtimestamp(run_at, UTC))
        released.run_at.CopyFrom(ts)
    return released


def _steps_bytes(steps: Any) -> int:
    """Bytes (about: characters) of the step results a lease carries."""
    return sum(len(v) for v in steps.values()) if steps else 0


def _epoch(ts: Timestamp) -> float:
    """Seconds since the epoch (without a datetime on the way: this runs for every lease)."""
    return ts.seconds + ts.nanos / 1e9


def _ref(key: RunKey) -> worker_pb2.LeaseRef:
    return worker_pb2.LeaseRef(execution_id=key[0], lease_token=key[1])


def _is_step(item: worker_pb2.WorkerMessage | tuple[str, Any]) -> bool:
    return isinstance(item, tuple) and item[0] == "step"


@dataclass(frozen=True)
class _Limits:
    """The coordinator's size limits, as announced in Registered (0: unknown)."""

    step_result_bytes: int = 0
    result_bytes: int = 0
    message_bytes: int = 0
    steps_bytes: int = 0

    @classmethod
    def announced(cls, registered: worker_pb2.Registered) -> _Limits:
        return cls(registered.max_step_result_bytes, registered.max_result_bytes,
                   registered.max_message_bytes, registered.max_steps_bytes)

    @property
    def message_budget(self) -> int:
        """Bytes of results per message the worker sends: half the coordinator's limit."""
        return self.message_bytes // 2 if self.message_bytes else DEFAULT_MESSAGE_BUDGET

    @staticmethod
    def refuse(text: str, limit: int) -> str:
        """Why `text` (JSON) is over `limit` bytes, worded as the coordinator would, or ""."""
        if not limit or len(text) * 4 <= limit:  # (a character is at most 4 bytes)
            return ""
        size = len(text.encode("utf-8", "surrogatepass"))
        if size <= limit:
            return ""
        return f"result_json: payload is {size} bytes; the limit is {limit} bytes"


#: bytes of results per message when the coordinator announced no limit
DEFAULT_MESSAGE_BUDGET = 4 * 1024 * 1024
#: what an item adds to a message besides its texts (ids, token, framing), roughly
ITEM_OVERHEAD = 128


def _coalesce(
    items: list[worker_pb2.WorkerMessage | tuple[str, Any]], budget: int
) -> list[worker_pb2.WorkerMessage]:
    """Merge queued log lines, step saves and outcomes into as few messages as fit `budget`
    bytes each (so that none is over the coordinator's message limit); keep others in order."""
    steps = [i[1] for i in items if isinstance(i, tuple) and i[0] == "step"]
    outcomes = [i[1] for i in items if isinstance(i, tuple) and i[0] == "outcome"]
    messages = [i for i in items if isinstance(i, worker_pb2.WorkerMessage)]
    waiting = [i[1] for i in items if isinstance(i, tuple) and i[0] == "waiting"]
    started = [i[1] for i in items if isinstance(i, tuple) and i[0] == "started"]
    if waiting or started:  # (small: 2 x 64 bytes an item at most, one message per batch)
        messages.append(worker_pb2.WorkerMessage(
            run_states=worker_pb2.RunStates(waiting=waiting, started=started)))
    logs = [i[1] for i in items if isinstance(i, tuple) and i[0] == "log"]
    messages += [  # before the outcomes, so that a run's last lines arrive while it is held
        worker_pb2.WorkerMessage(log_lines=worker_pb2.LogLines(items=chunk))
        for chunk in _chunks(logs, lambda line: len(line.message) + ITEM_OVERHEAD, budget)
    ]
    messages += [
        worker_pb2.WorkerMessage(step_saves=worker_pb2.StepSaves(items=chunk))
        for chunk in _chunks(steps, _step_size, budget)
    ]
    messages += [
        worker_pb2.WorkerMessage(outcomes=worker_pb2.Outcomes(items=chunk))
        for chunk in _chunks(outcomes, _outcome_size, budget)
    ]
    return messages


def _chunks(items: list[Any], size: Callable[[Any], int], budget: int) -> list[list[Any]]:
    chunks: list[list[Any]] = []
    current: list[Any] = []
    used = 0
    for item in items:
        n = size(item)
        if current and used + n > budget:
            chunks.append(current)
            current, used = [], 0
        current.append(item)
        used += n
    if current:
        chunks.append(current)
    return chunks


def _step_size(save: worker_pb2.StepSave) -> int:
    return len(save.result_json) + len(save.name) + ITEM_OVERHEAD


def _outcome_size(outcome: worker_pb2.Outcome) -> int:
    error = outcome.failed.error
    return (len(outcome.completed.result_json) + len(error.message) + len(error.traceback)
            + ITEM_OVERHEAD)


def _global_cap(o: TaskOptions) -> int:
    """The cap over all running executions: `concurrency`, unless it is the per-key cap (the
    older form `concurrency=N, key=...` without `key_concurrency`)."""
    return 0 if o.key and o.key_concurrency is None else o.concurrency


def _key_cap(o: TaskOptions) -> int:
    if o.key_concurrency is not None:
        return o.key_concurrency
    return o.concurrency if o.key else 0


def task_definition(t: Task[..., Any]) -> worker_pb2.TaskDefinition:
    """The registration message of a task."""
    o = t.options
    definition = worker_pb2.TaskDefinition(
        name=o.name,
        processes=o.processes,
        capacity=o.capacity,
        max_attempts=o.max_attempts,
        retry=worker_pb2.RetryPolicy(
            initial_backoff_seconds=o.backoff,
            max_backoff_seconds=o.max_backoff,
            multiplier=o.backoff_multiplier,
            jitter=o.jitter,
            non_retryable_errors=[*o.non_retryable, "NonRetryableError"],
        ),
        timezone=o.timezone,
        timeout_seconds=o.timeout or 0.0,
        on_failure=o.on_failure or "",
        concurrency=_global_cap(o),
        key=o.key or "",
        key_concurrency=_key_cap(o),
        rate_limit=o.rate_limit or "",
        rate_limit_name=o.rate_limit_name or "",
        queue=o.queue or "",
        schedules=[worker_pb2.StaticSchedule(name=n, cron=c) for n, c in o.schedules],
        subscriptions=[
            worker_pb2.EventSubscription(
                event=event, filter_json=json.dumps(dict(o.filter)) if o.filter else ""
            )
            for event in o.on
        ],
    )
    if o.window is not None:
        definition.window.CopyFrom(worker_pb2.Window(start=o.window[0], end=o.window[1]))
    for state, seconds in o.retention:
        setattr(definition.retention, f"{state}_seconds", seconds)
    if o.redact_after is not None:
        definition.retention.redact_after_seconds = o.redact_after
    return definition
