"""Execution timeouts: the coordinator's deadline of an attempt follows where its run is.

An attempt's deadline (see the lease query) is its grant plus the timeout plus
--timeout-grace, in real time. A lease the worker prefetched and announced as waiting
(RunStates.waiting) has not started, so its deadline is suspended; when the worker says it
handed the run to a pool process (RunStates.started), the deadline starts again from then.
Leases that start at once are never announced, and keep their grant-based deadline (they
waited under ANNOUNCE_EVERY). Past its deadline no write of the attempt is recorded, and the
reaper fails it as Timeout (Dispatcher.reap).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from .clock import Clock
from .loop_errors import log_failed_pass
from .models import LeaseRef
from .sessions import Session
from .store import Store

log = logging.getLogger(__name__)


class Deadlines:
    """Moves the deadlines of timed attempts as their workers report run states."""

    def __init__(self, store: Store, real: Clock, grace: float) -> None:
        self.store = store
        self.real = real
        self.grace = grace
        #: updates are applied in the order the worker reported them
        self._order = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    def run_states(
        self, session: Session, waiting: Sequence[LeaseRef], started: Sequence[LeaseRef]
    ) -> None:
        """Suspend the deadlines of the timed leases among `waiting`, restart those of
        `started` (in the background, in order)."""
        if not session.timed:
            return
        changes = [(ref, False) for ref in waiting if ref.execution_id in session.timed]
        changes += [(ref, True) for ref in started if ref.execution_id in session.timed]
        if changes:
            task = asyncio.create_task(self._apply(changes))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _apply(self, changes: list[tuple[LeaseRef, bool]]) -> None:
        async with self._order:
            try:
                await self.store.shift_deadlines(changes, self.real.now(), self.grace)
            except Exception:
                # best effort: a deadline not moved still ends the attempt (grant-based)
                log_failed_pass(log, "could not move execution deadlines")
