"""Retention and redaction: deletes finished executions after their task's retention (and
emitted events after retention_events) and redacts their data after redact_after.

Every coordinator runs this loop; one at a time runs a pass (a session advisory lock held
for the pass). A pass works in bounded batches, each its own short statement that skips rows
other transactions hold, so it never holds long locks or stalls leasing; what one pass
leaves (more than MAX_BATCHES per task and state) the next one takes up. After each batch it
pauses as long as the batch took, so that a pass with a large backlog (100,000 rows to
delete) keeps one database connection busy at most half of the time instead of all of it;
paced, it still deletes far faster than anything creates executions (a batch of 1,000 takes
2-4 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from prometheus_client import Counter

from .clock import Clock
from .loop_errors import log_failed_pass
from .metrics import CoordinatorMetrics
from .models import Retention, State
from .settings import Settings
from .store import Store

log = logging.getLogger(__name__)

FINAL_STATES = (State.SUCCEEDED, State.FAILED, State.CANCELLED)
#: most batches per task and final state in one pass
MAX_BATCHES = 1000
#: after a batch, pause this many times as long as the batch took
PACE = 1.0
#: where redaction starts for a task without a mark
_BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)


def kept_for(own: Retention, state: State, settings: Settings) -> float:
    """Seconds a finished execution in `state` is kept: the task's setting or the default."""
    value: float | None = getattr(own, state.value)
    return value if value is not None else getattr(settings, f"retention_{state.value}")


def redacted_after(own: Retention, settings: Settings) -> float | None:
    return own.redact_after if own.redact_after is not None else settings.redact_after


async def _pause(began: float) -> None:
    """Between batches: let leasing and the API in, for as long as the batch took."""
    await asyncio.sleep(PACE * (time.monotonic() - began))


class Maintenance:
    """The retention loop of one coordinator."""

    def __init__(
        self, store: Store, clock: Clock, settings: Settings, metrics: CoordinatorMetrics
    ) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings
        self.metrics = metrics
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="maintenance")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.metrics.maintenance_passes.labels("failed").inc()
                log_failed_pass(log, "maintenance pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.maintenance_interval)
            self._wake.clear()

    async def run_once(self) -> bool:
        """One pass; False when another coordinator holds the maintenance lock."""
        async with self.store.maintenance_lock() as locked:
            if not locked:
                self.metrics.maintenance_passes.labels("skipped").inc()
                return False
            started = time.monotonic()
            now = self.clock.now()
            marks = await self.store.redaction_marks()
            for task, own in await self.store.retention_policies():
                for state in FINAL_STATES:
                    cutoff = now - timedelta(seconds=kept_for(own, state, self.settings))
                    await self._delete(task, state, cutoff)
                    redact = redacted_after(own, self.settings)
                    if redact is not None:
                        since = marks.get((task, state), _BEGINNING)
                        await self._redact(task, state, since, now - timedelta(seconds=redact),
                                           now)
            await self._delete_events(now - timedelta(seconds=self.settings.retention_events))
            departed = datetime.now(UTC) - timedelta(seconds=self.settings.task_stale_after)
            await self.store.delete_departed_workers(departed, self.settings.maintenance_batch)
            self.metrics.maintenance_passes.labels("ran").inc()
            self.metrics.maintenance_seconds.observe(time.monotonic() - started)
            return True

    async def _delete(self, task: str, state: State, cutoff: datetime) -> None:
        await self._batches(
            lambda batch: self.store.delete_expired(task, state, cutoff, batch),
            self.metrics.maintenance_deleted.labels(state.value))

    async def _delete_events(self, cutoff: datetime) -> None:
        await self._batches(lambda batch: self.store.delete_old_events(cutoff, batch),
                            self.metrics.maintenance_events_deleted)

    async def _redact(
        self, task: str, state: State, since: datetime, cutoff: datetime, now: datetime
    ) -> None:
        if cutoff <= since:
            return
        await self._batches(
            lambda batch: self.store.redact(task, state, since, cutoff, batch, now),
            self.metrics.maintenance_redacted.labels(state.value))

    async def _batches(self, step: Callable[[int], Awaitable[int]], done: Counter) -> None:
        """Run `step(batch size)` until it handles fewer rows than a batch (or MAX_BATCHES
        times), counting its rows; paced: after each batch, a pause as long as it took."""
        batch = self.settings.maintenance_batch
        for _ in range(MAX_BATCHES):
            began = time.monotonic()
            handled = await step(batch)
            done.inc(handled)
            if handled < batch:
                return
            await _pause(began)
