"""Vacuuming the tables that churn, as often as they need it.

Every execution's row is written three times or more (invoke, lease, end) and retention
deletes it, so a busy queue leaves dead row versions at the rate it runs: 25,000 a second at
8,000 executions a second. PostgreSQL's autovacuum looks at a database once per
`autovacuum_naptime` (a server setting, default 1 min), however low a table's own thresholds
(migration 0019): so the tables held a minute or more of dead versions before any of their
space was reused. In S9 the executions table grew to 600 MiB for 90,000 live rows, and
leasing through it ran at 0.79 of its rate on a fresh table (0.94 with the check below).

This loop reads the dead and live row counts of those tables (the statistics autovacuum
uses; one small query) every VACUUM_CHECK seconds, and vacuums a table once it has at least
`--vacuum-dead-rows` dead rows and VACUUM_FRACTION of its live ones. `VACUUM (SKIP_LOCKED)`
skips a table that autovacuum or another coordinator is vacuuming, so coordinators need no
lock of their own. It runs on a connection of its own, so it never holds one the pool's
callers wait for. A role that does not own the tables cannot vacuum them: then the loop says
so once and stops, and autovacuum alone keeps them (docs/history.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from .loop_errors import log_failed_pass
from .metrics import CoordinatorMetrics
from .store import Store

log = logging.getLogger(__name__)

#: the tables that churn (migration 0019 tunes their autovacuum too)
CHURNING = ("conductor_executions", "conductor_steps", "conductor_attempts",
            "conductor_events", "conductor_waits")
#: seconds between checks of the dead-row counts
VACUUM_CHECK = 1.0
#: a table is vacuumed once its dead rows are also this fraction of its live ones (a table of
#: ten million rows is not vacuumed for every 10,000 dead ones)
VACUUM_FRACTION = 0.05


def due(dead: int, live: int, dead_rows: int) -> bool:
    """Whether a table with these counts is vacuumed now."""
    return dead_rows > 0 and dead >= dead_rows and dead >= VACUUM_FRACTION * live


class Vacuum:
    """The vacuum loop of one coordinator."""

    def __init__(self, store: Store, dead_rows: int, metrics: CoordinatorMetrics,
                 tables: Sequence[str] = CHURNING) -> None:
        self.store = store
        self.dead_rows = dead_rows
        self.metrics = metrics
        self.tables = list(tables)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.dead_rows > 0:
            self._task = asyncio.create_task(self._run(), name="vacuum")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                async with self.store.own_connection() as conn:
                    if not await self.store.can_vacuum(conn, self.tables):
                        log.info("the database role does not own Conductor's tables, so the"
                                 " coordinator does not vacuum them (autovacuum does)")
                        return
                    while True:
                        await self.run_once(conn)
                        await asyncio.sleep(VACUUM_CHECK)
            except asyncio.CancelledError:
                raise
            except Exception:
                log_failed_pass(log, "vacuum check failed")
            await asyncio.sleep(VACUUM_CHECK)

    async def run_once(self, conn: AsyncConnection[TupleRow]) -> list[str]:
        """One check: vacuum the tables that are due; returns their names."""
        vacuumed = []
        for table, dead, live in await self.store.dead_rows(conn, self.tables):
            if not due(dead, live, self.dead_rows):
                continue
            began = time.monotonic()
            await self.store.vacuum(conn, table)
            self.metrics.vacuum_seconds.observe(time.monotonic() - began)
            self.metrics.vacuums.labels(table).inc()
            vacuumed.append(table)
        return vacuumed
