"""A connected worker as the dispatcher sees it: its tasks, capacity, leases and outbox."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from .models import Lease, LeaseRef, StepWriteResult, TaskDef

_ids = itertools.count(1)


class StepAck(NamedTuple):
    """Sent to the worker once a step save is durable (or rejected as stale)."""

    #: as the worker sent it
    execution_id: str
    name: str
    #: the recorded result JSON; None: stale lease or refused write, nothing written
    recorded: StepWriteResult
    #: why the write was refused (the save itself is invalid), naming the field
    error: str = ""
    #: the lease token the save carried, as the worker sent it (a worker may hold an old
    #: and a new lease of one execution for a moment; the answer belongs to one of them)
    token: str = ""


@dataclass(frozen=True)
class OutcomeAck:
    """Sent to the worker once an outcome is durable (or rejected as stale)."""

    lease: LeaseRef
    ok: bool
    #: when ok: the execution's state afterwards and its next run time if pending again
    state: str
    run_at: datetime | None


@dataclass(frozen=True)
class CancelRequest:
    """Tell the worker to stop executions at their next step or checkpoint."""

    execution_ids: list[int]


@dataclass(frozen=True)
class WindowRelease:
    """Tell the worker to release executions whose window closed, until `run_at`."""

    execution_ids: list[int]
    run_at: datetime


class Drained:
    """Drain mode: nothing of the worker's tasks is runnable and it holds no lease."""


class LeasingStopped:
    """The answer to StopLeasing: no lease follows it on this stream."""


@dataclass(frozen=True)
class HeartbeatAck:
    """The answer to a heartbeat: the stream works both ways; these leases are gone."""

    coordinator_time: datetime
    lost: list[LeaseRef]


@dataclass(frozen=True)
class ClockSync:
    """The coordinator's (test) clock jumped; the worker confirms once it uses the new time."""

    coordinator_time: datetime
    sequence: int


#: What the coordinator sends down a worker stream, before protobuf conversion.
Outgoing = (
    list[Lease]
    | list[StepAck]
    | list[OutcomeAck]
    | CancelRequest
    | WindowRelease
    | Drained
    | LeasingStopped
    | HeartbeatAck
    | ClockSync
    | None
)


@dataclass(eq=False)
class Session:
    """One open worker stream."""

    worker_id: str
    tasks: dict[str, TaskDef]
    capacity: dict[str, int]
    #: pool processes per task (below this many leases the worker may go idle)
    slots: dict[str, int] = field(default_factory=dict)
    hostname: str = ""
    pid: int = 0
    inflight: dict[int, str] = field(default_factory=dict)  # execution id -> task
    tokens: dict[int, str] = field(default_factory=dict)  # execution id -> its lease token
    used: Counter[str] = field(default_factory=Counter)  # task -> leases held
    leasing: bool = True
    drain: bool = False
    drained: bool = False
    #: executions already asked to release (window closed), so they are asked once
    release_requested: set[int] = field(default_factory=set)
    outbox: asyncio.Queue[Outgoing] = field(default_factory=asyncio.Queue)
    #: why the coordinator ended the stream, if a write failed (the stream's status says it)
    failure: Exception | None = None
    id: int = field(default_factory=lambda: next(_ids))
    #: time.monotonic() when the worker was last heard from (any message)
    last_heard: float = field(default_factory=time.monotonic)
    #: silent for too long: no more leases are pushed to it (see Dispatcher.check_liveness)
    silent: bool = False
    closed: bool = False
    #: the dispatcher's lease round in which this worker was last given leases
    served: int = 0
    #: leases the worker said it holds without having started them: execution id -> token
    waiting: dict[int, str] = field(default_factory=dict)
    #: the latest lease expiry this coordinator wrote for this stream's leases
    renewed_until: datetime | None = None
    #: held leases whose attempt has an execution timeout (see deadlines.py)
    timed: set[int] = field(default_factory=set)
    #: log-line messages are stored one after another, in the order they came (each is
    #: handled in a task of its own; two at once could be stored out of order)
    log_lines: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: the queues it takes work from (None: every queue)
    queues: tuple[str, ...] | None = None

    def free(self, task: str) -> int:
        """Leases of `task` this worker accepts now."""
        if not self.leasing or self.silent or self.closed or task not in self.capacity:
            return 0
        return max(0, self.capacity[task] - self.used[task])

    def idle(self, task: str) -> int:
        """Leases of `task` this worker accepts now without prefetching: its pool processes
        (slots) that hold no lease."""
        return min(self.free(task), self.slots.get(task, 1) - self.used[task])

    def wants(self, task: str) -> bool:
        """Worth a lease query right now: a quarter of the capacity is free, or the worker
        may run out of work (fewer leases than pool processes). Leasing in larger batches
        keeps the cost per execution low under load; the second rule keeps latency low.
        (Smaller room is still filled, after a short wait: see Dispatcher._defer.)"""
        free = self.free(task)
        if free <= 0:
            return False
        return free >= max(1, self.capacity[task] // 4) or self.used[task] < self.slots.get(task, 1)

    def hold(self, execution_id: int, task: str, token: str) -> None:
        if execution_id not in self.inflight:
            self.inflight[execution_id] = task
            self.used[task] += 1
        self.tokens[execution_id] = token

    def run_states(self, waiting: Iterable[LeaseRef], started: Iterable[LeaseRef]) -> None:
        """The worker queued these leases without starting them / has started these."""
        for ref in waiting:
            if self.tokens.get(ref.execution_id) == ref.token:
                self.waiting[ref.execution_id] = ref.token
        for ref in started:
            if self.waiting.get(ref.execution_id) == ref.token:
                del self.waiting[ref.execution_id]

    def renewed(self, until: datetime) -> None:
        if self.renewed_until is None or until > self.renewed_until:
            self.renewed_until = until

    def drop(self, execution_id: int, token: str | None = None) -> str | None:
        """Forget a lease (only if its token is `token`, when given: a write with another
        token, forged or stale, frees nothing); returns its task if it was held."""
        if token is not None and self.tokens.get(execution_id, token) != token:
            return None
        task = self.inflight.pop(execution_id, None)
        if task is not None:
            self.used[task] -= 1
            self.release_requested.discard(execution_id)
            self.tokens.pop(execution_id, None)
            self.waiting.pop(execution_id, None)
            self.timed.discard(execution_id)
        return task

    def send(self, message: Outgoing) -> None:
        self.outbox.put_nowait(message)

    def heard(self) -> None:
        """A message arrived from the worker."""
        self.last_heard = time.monotonic()
        self.silent = False

    def close(self, failure: Exception | None = None) -> None:
        """End the stream: the rpc layer stops after draining the outbox (and ends the call
        with `failure`'s status when given)."""
        if failure is not None and self.failure is None:
            self.failure = failure
        self.closed = True
        self.outbox.put_nowait(None)
