"""A connected worker as the dispatcher sees it: its tasks, capacity, leases and outbox."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
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


@dataclass(frozen=True)
class OutcomeAck:
    """Sent to the worker once an outcome is durable (or rejected as stale)."""

    lease: LeaseRef
    ok: bool


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


#: What the coordinator sends down a worker stream, before protobuf conversion.
Outgoing = (
    list[Lease] | list[StepAck] | list[OutcomeAck] | CancelRequest | WindowRelease | Drained | None
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

    def free(self, task: str) -> int:
        """Leases of `task` this worker accepts now."""
        if not self.leasing or task not in self.capacity:
            return 0
        return max(0, self.capacity[task] - self.used[task])

    def wants(self, task: str) -> bool:
        """Worth a lease query right now: a quarter of the capacity is free, or the worker
        may run out of work (fewer leases than pool processes). Leasing in larger batches
        keeps the cost per execution low under load; the second rule keeps latency low.
        (Smaller room is still filled, after a short wait: see Dispatcher._defer.)"""
        free = self.free(task)
        if free <= 0:
            return False
        return free >= max(1, self.capacity[task] // 4) or self.used[task] < self.slots.get(task, 1)

    def hold(self, execution_id: int, task: str) -> None:
        if execution_id not in self.inflight:
            self.inflight[execution_id] = task
            self.used[task] += 1

    def drop(self, execution_id: int) -> str | None:
        """Forget a lease; returns its task if it was held."""
        task = self.inflight.pop(execution_id, None)
        if task is not None:
            self.used[task] -= 1
            self.release_requested.discard(execution_id)
        return task

    def send(self, message: Outgoing) -> None:
        self.outbox.put_nowait(message)

    def close(self, failure: Exception | None = None) -> None:
        """End the stream: the rpc layer stops after draining the outbox (and ends the call
        with `failure`'s status when given)."""
        if failure is not None and self.failure is None:
            self.failure = failure
        self.outbox.put_nowait(None)
