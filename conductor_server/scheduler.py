"""Cron: turns schedules into executions, exactly once per (schedule, fire time).

Every coordinator runs this loop; one at a time fires (advisory lock), and the unique index
on (task, schedule, fire_time) makes a double fire impossible even without the lock. Fires
that land outside the task's window simply wait for it: the dispatcher never leases outside.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from . import cron
from .clock import Clock
from .dispatch import Dispatcher
from .loop_errors import log_failed_pass
from .models import Fire, InvalidArgument, NotFound, Schedule, TaskDef
from .store import Store
from .validation import check_payload, shown
from .windows import zone

log = logging.getLogger(__name__)

IDLE_SWEEP = timedelta(seconds=10)
LOCKED_OUT_PAUSE = 0.05  # seconds to wait when another coordinator is firing


class Scheduler:
    """Fires due schedules; wakes at the next fire time, on clock jumps and on changes."""

    def __init__(self, store: Store, clock: Clock, dispatcher: Dispatcher) -> None:
        self.store = store
        self.clock = clock
        self.dispatcher = dispatcher
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._passes = 0
        self._in_pass = False
        self._pass_done = asyncio.Condition()
        clock.subscribe(self._clock_jumped)

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="scheduler")

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)

    def wake(self) -> None:
        self._wake.set()

    def _clock_jumped(self) -> None:
        if self._loop_task is not None:
            self._loop_task.get_loop().call_soon_threadsafe(self._wake.set)

    def static_schedules(self, tasks: Iterable[TaskDef]) -> dict[str, list[Schedule]]:
        """The schedules declared on tasks, validated (raises InvalidArgument)."""
        now = self.clock.now()
        return {
            task.name: [
                new_schedule(
                    task=task.name,
                    name=name,
                    expression=expression,
                    timezone=task.timezone,
                    payload_json="null",
                    static=True,
                    missed="latest",
                    missed_limit=1,
                    now=now,
                    payload_limit=len("null"),
                )
                for name, expression in task.schedules
            ]
            for task in tasks
        }

    async def sync_static(self, schedules: dict[str, list[Schedule]]) -> None:
        """Store the schedules declared on registered tasks (replacing older static ones)."""
        for task, declared in schedules.items():
            await self.store.sync_static_schedules(task, declared, self.clock.now())
        self.wake()

    async def settle(self) -> None:
        """Wait for a full pass that began after this call (tests)."""
        async with self._pass_done:
            target = self._passes + (2 if self._in_pass else 1)
            self._wake.set()
            await self._pass_done.wait_for(lambda: self._passes >= target)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            self._in_pass = True
            pause = 0.0
            try:
                _, locked_out = await self.fire_due()
                due = await self.store.next_schedule_due()
                pause = LOCKED_OUT_PAUSE if locked_out else 0.0
            except Exception:
                log_failed_pass(log, "scheduler pass failed; retrying")
                due = self.clock.now() + timedelta(seconds=1)
            async with self._pass_done:
                self._passes += 1
                self._in_pass = False
                self._pass_done.notify_all()
            now = self.clock.now()
            until = min(due or now + IDLE_SWEEP, now + IDLE_SWEEP)
            delay = max(pause, (until - now).total_seconds())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def fire_due(self) -> tuple[int, bool]:
        """Fire every due schedule; returns the executions created and whether another
        coordinator held the scheduler lock."""
        created_total = 0
        while True:
            now = self.clock.now()
            result = await self.store.fire_schedules(now, functools.partial(plan, now=now))
            if result is None:
                return created_total, True
            handled, created = result
            created_total += len(created)
            for task in set(created):
                self.dispatcher.wake(task)
            if handled == 0:
                return created_total, False


def plan(schedule: Schedule, now: datetime) -> tuple[list[Fire], datetime]:
    """The executions a due schedule creates now, and its next fire time."""
    assert schedule.next_fire_at is not None
    times, next_at = cron.due_fires(
        schedule.cron,
        zone(schedule.timezone),
        schedule.next_fire_at,
        now,
        schedule.missed,
        schedule.missed_limit,
    )
    fires = [Fire(schedule.task, schedule.name, schedule.payload_json, t) for t in times]
    return fires, next_at


def new_schedule(
    *,
    task: str,
    name: str,
    expression: str,
    timezone: str,
    payload_json: str,
    static: bool,
    missed: str,
    missed_limit: int,
    now: datetime,
    payload_limit: int,
    prefix: str = "schedule",
) -> Schedule:
    """Validate a schedule and compute its first fire time (field names as in the API)."""
    if not task:
        raise InvalidArgument(f"{prefix}.task", "required")
    if not name or len(name) > 200:
        raise InvalidArgument(f"{prefix}.name", "required, at most 200 characters")
    expression = cron.validate_cron(expression, f"{prefix}.cron")
    tz = zone(timezone or "UTC", f"{prefix}.timezone")
    if missed not in cron.MISSED_POLICIES:
        raise InvalidArgument(f"{prefix}.missed", f"must be one of {cron.MISSED_POLICIES}")
    if missed_limit < 1:
        raise InvalidArgument(f"{prefix}.missed_limit", f"must be >= 1, got {missed_limit}")
    payload = check_payload(payload_json, f"{prefix}.payload_json", payload_limit)
    return Schedule(
        task=task,
        name=name,
        cron=expression,
        timezone=tz.key,
        payload_json=payload,
        static=static,
        missed=missed,
        missed_limit=missed_limit,
        next_fire_at=cron.next_fire(expression, tz, now),
    )


async def require_task(dispatcher: Dispatcher, task: str, prefix: str = "schedule") -> None:
    if not task:
        raise InvalidArgument(f"{prefix}.task", "required")
    if await dispatcher.task_def(task) is None:
        raise NotFound(f"{prefix}.task: no task named {shown(task)} is registered")
