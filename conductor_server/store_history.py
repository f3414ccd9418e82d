"""The store's queries for runs kept over months: attempt history, reruns and retries, bulk
operations by filter, retention and redaction, and the task registry. A part of Store (its
base class), so still the only user of sql/ besides store.py."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import LiteralString

from psycopg import AsyncConnection, sql
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from .models import Execution, Retention, State, TaskInfo
from .payload_filter import NO_FILTER, PayloadFilter
from .rollbacks import retried
from .sql import QUERIES


def _q(name: str) -> LiteralString:
    return QUERIES[name]


@dataclass(frozen=True)
class BulkFilter:
    """Which executions a bulk operation applies to (None: any)."""

    states: tuple[State, ...]
    task: str | None = None
    queue: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    parent_id: int | None = None
    payload: PayloadFilter = NO_FILTER


class HistoryStore:
    """Mixed into Store; uses its pool."""

    pool: AsyncConnectionPool[AsyncConnection[TupleRow]]
    url: str

    async def _execution_in(self, conn: AsyncConnection[TupleRow], execution_id: int) -> Execution:
        raise NotImplementedError  # Store's: the execution as `conn`'s transaction sees it

    # -- reruns and retries ---------------------------------------------------------------

    async def rerun(
        self, execution_id: int, payload_json: str | None, copy_steps: Sequence[str], now: datetime
    ) -> Execution | None:
        """A new execution linked to a finished one, with the named steps copied; returns
        it as created (before any worker can lease it), or None when the original is not
        finished (or gone)."""
        params = {"id": execution_id, "payload": payload_json, "now": now}
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(_q("insert_rerun"), params)
            row = await cur.fetchone()
            if row is None:
                return None
            new_id, task = row
            if copy_steps:
                await conn.execute(
                    _q("copy_steps"),
                    {"id": execution_id, "new_id": new_id, "names": list(copy_steps)},
                )
            await conn.execute(_q("notify_ready"), {"task": task})
            return await self._execution_in(conn, new_id)

    async def retry(self, ids: Sequence[int], now: datetime) -> list[tuple[int, str]]:
        """Retry failed/cancelled executions in place; returns (id, task) of those retried."""
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(_q("retry_executions"), {"ids": list(ids), "now": now})
            rows = [(row[0], row[1]) for row in await cur.fetchall()]
            for task in sorted({task for _, task in rows}):
                await conn.execute(_q("notify_ready"), {"task": task})
        return rows

    async def retry_one(self, execution_id: int, now: datetime) -> Execution | None:
        """Retry one failed/cancelled execution in place; returns it as the retry left it
        (pending: read before the commit, so no worker can have leased it yet), or None
        when it was not retried."""
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(_q("retry_executions"), {"ids": [execution_id], "now": now})
            row = await cur.fetchone()
            if row is None:
                return None
            await conn.execute(_q("notify_ready"), {"task": row[1]})
            return await self._execution_in(conn, execution_id)

    # -- bulk operations ------------------------------------------------------------------

    async def bulk_page(
        self, f: BulkFilter, after_id: int, limit: int, *, uncancelled: bool = False
    ) -> list[int]:
        """Ids of the next page of executions matching the filter, ascending."""
        params = {
            "after_id": after_id,
            "states": [s.value for s in f.states],
            "task": f.task,
            "queue": f.queue,
            "created_after": f.created_after,
            "created_before": f.created_before,
            "parent_id": f.parent_id,
            "match": f.payload.match_json,
            "contains": f.payload.contains_json,
            "uncancelled": uncancelled,
            "limit": limit,
        }
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("bulk_page"), params)
            return [row[0] for row in await cur.fetchall()]

    @retried
    async def cancel_many(
        self, ids: Sequence[int], now: datetime, *, again: bool = False
    ) -> list[TupleRow]:
        """Cancel pending executions, flag running ones (their workers are told; with
        `again` also those flagged before); returns (id, state, worker id) of each changed."""
        params = {"ids": list(ids), "now": now, "again": again}
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(_q("cancel"), params)
            rows = await cur.fetchall()
            cancelled = [str(row[0]) for row in rows if row[1] == State.CANCELLED]
            flagged = [str(row[0]) for row in rows if row[1] != State.CANCELLED]
            await self._notify(conn, "conductor_finished", cancelled)
            await self._notify(conn, "conductor_cancel", flagged)
        return rows

    @retried
    async def delete_many(self, ids: Sequence[int]) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("delete_many"), {"ids": list(ids)})
            return len(await cur.fetchall())

    async def _notify(
        self, conn: AsyncConnection[TupleRow], channel: LiteralString, ids: list[str]
    ) -> None:
        raise NotImplementedError  # Store's

    # -- retention and redaction ----------------------------------------------------------

    @contextlib.asynccontextmanager
    async def maintenance_lock(self) -> AsyncIterator[bool]:
        """Hold the maintenance lock for a pass (False: another coordinator has it). The lock
        belongs to the connection, so a coordinator that dies lets go of it."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("try_maintenance_lock"))
            row = await cur.fetchone()
            locked = bool(row and row[0])
            try:
                yield locked
            finally:
                if locked:
                    await conn.execute(_q("maintenance_unlock"))

    async def retention_policies(self) -> list[tuple[str, Retention]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("retention_policies"))
            return [(r[0], Retention(r[1], r[2], r[3], r[4])) for r in await cur.fetchall()]

    @retried
    async def delete_expired(self, task: str, state: State, cutoff: datetime, limit: int) -> int:
        params = {"task": task, "state": state.value, "cutoff": cutoff, "limit": limit}
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("delete_expired"), params)
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    # -- vacuum (conductor_server/vacuum.py) -------------------------------------------------

    @contextlib.asynccontextmanager
    async def own_connection(self) -> AsyncIterator[AsyncConnection[TupleRow]]:
        """A connection outside the pool (autocommit), for statements that take long."""
        conn = await AsyncConnection.connect(self.url, autocommit=True)
        try:
            yield conn
        finally:
            await conn.close()

    async def can_vacuum(self, conn: AsyncConnection[TupleRow], tables: Sequence[str]) -> bool:
        cur = await conn.execute(_q("can_vacuum"), {"tables": list(tables)})
        row = await cur.fetchone()
        return bool(row and row[0])

    async def dead_rows(
        self, conn: AsyncConnection[TupleRow], tables: Sequence[str]
    ) -> list[tuple[str, int, int]]:
        """(table, dead rows, live rows) as PostgreSQL's statistics count them."""
        cur = await conn.execute(_q("dead_rows"), {"tables": list(tables)})
        return [(r[0], int(r[1]), int(r[2])) for r in await cur.fetchall()]

    async def vacuum(self, conn: AsyncConnection[TupleRow], table: str) -> None:
        await conn.execute(sql.SQL(_q("vacuum")).format(table=sql.Identifier(table)))

    async def delete_old_events(self, cutoff: datetime, limit: int) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("delete_old_events"), {"cutoff": cutoff, "limit": limit})
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def redaction_marks(self) -> dict[tuple[str, State], datetime]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("redaction_marks"))
            return {(r[0], State(r[1])): r[2] for r in await cur.fetchall()}

    async def redact(
        self, task: str, state: State, since: datetime, cutoff: datetime, limit: int,
        now: datetime,
    ) -> int:
        """Redact one batch and move the task's mark; returns how many were redacted."""
        params = {"task": task, "state": state.value, "since": since, "cutoff": cutoff,
                  "limit": limit, "now": now}
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(_q("redact_finished"), params)
            row = await cur.fetchone()
            count, last = (int(row[0]), row[1]) if row else (0, None)
            through = cutoff if count < limit or last is None else last
            await conn.execute(
                _q("set_redaction_mark"), {"task": task, "state": state.value, "through": through}
            )
        return count

    # -- the task registry ----------------------------------------------------------------

    async def delete_departed_workers(self, seen_before: datetime, limit: int) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                _q("delete_departed_workers"), {"seen_before": seen_before, "limit": limit}
            )
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def list_tasks(self, seen_after: datetime) -> list[TaskInfo]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("list_tasks"), {"seen_after": seen_after})
            return [
                TaskInfo(r[0], tuple(r[1]), r[2], Retention(r[3], r[4], r[5], r[6]))
                for r in await cur.fetchall()
            ]

    async def task_in_use(self, name: str) -> bool:
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("task_in_use"), {"name": name})
            row = await cur.fetchone()
        return bool(row and row[0])

    async def delete_task(self, name: str) -> int | None:
        """Delete a task and its schedules; None when there is no such task."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("delete_task"), {"name": name})
            row = await cur.fetchone()
        if row is None or not row[0]:
            return None
        return int(row[1])
