"""The store's reads for "why is it not running?" (explain.py). A part of Store (its base
class), so still the only user of sql/ besides store.py."""

from __future__ import annotations

from datetime import datetime
from typing import LiteralString

from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from .sql import QUERIES


def _q(name: str) -> LiteralString:
    return QUERIES[name]


class FlowStore:
    """Mixed into Store; uses its pool."""

    pool: AsyncConnectionPool[AsyncConnection[TupleRow]]

    async def running_holders(self, task: str, key: str | None) -> tuple[list[int], int]:
        """Up to 20 running executions of `task` (with `key`, unless None), oldest lease
        first, and how many run."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("explain_running"), {"task": task, "key": key})
            row = await cur.fetchone()
        return (list(row[0]), int(row[1])) if row else ([], 0)

    async def bucket_state(
        self, bucket: str, key: str, count: int, period: float, now: datetime
    ) -> tuple[float | None, datetime | None]:
        """(tokens now, or None when never used; paused until)."""
        params = {"bucket": bucket, "key": key, "rate_count": count,
                  "rate_period": period or 1.0, "now": now}
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("explain_bucket"), params)
            row = await cur.fetchone()
        return (row[0], row[1]) if row else (None, None)

    async def unfinished_children(self, execution_id: int, step: str) -> list[int]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("explain_children"), {"id": execution_id, "step": step})
            row = await cur.fetchone()
        return list(row[0]) if row else []

    async def worker_serves(self, task: str, queue: str, seen_after: datetime) -> bool:
        params = {"task": task, "queue": queue, "seen_after": seen_after}
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("explain_workers"), params)
            row = await cur.fetchone()
        return bool(row and row[0])
