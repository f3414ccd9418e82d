"""Workflow SQL: child executions, waits, signals, events and subscriptions.

The invariants live in the database (migration 0008): a release of an execution with an
open wait makes it wait, the last child to finish resolves its parent's wait, cancelling
cascades to descendants, and conductor_emit serves the Emit call and applications' own
transactions alike. This module calls those named queries and functions, nothing more.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from .models import FailedPrecondition, InvalidArgument, NewExecutions, TaskDef
from .rollbacks import retried
from .sql import QUERIES


def _q(name: str) -> LiteralString:
    return QUERIES[name]


@dataclass(frozen=True)
class WaitRequest:
    """A handler's wait, fenced by its lease: for children, a signal or an event."""

    execution_id: int
    token: str
    step: str
    kind: str  # "children" | "signal" | "event"
    key: str | None = None  # the signal's or event's name
    match_json: str | None = None  # the event filter (a JSON object)
    deadline: datetime | None = None
    children: NewExecutions | None = None


@dataclass(frozen=True)
class WaitAnswer:
    """The step's recorded result once the wait is over; None while it goes on."""

    result_json: str | None
    child_ids: list[int]
    #: the task of the new children (to wake), when this call created them
    created_task: str | None = None


class WorkflowStore:
    """PostgreSQL access for workflows (shares the coordinator's pool)."""

    def __init__(self, pool: AsyncConnectionPool[AsyncConnection[TupleRow]]) -> None:
        self.pool = pool

    @retried
    async def wait(self, request: WaitRequest, now: datetime) -> WaitAnswer:
        """Begin (or look at) a wait in one transaction, under the execution's row lock:
        the first call creates the wait (and the children), any later one answers whether
        it is over; one whose deadline passed resolves it as timed out."""
        params: dict[str, Any] = {
            "id": request.execution_id,
            "token": request.token,
            "step": request.step,
            "now": now,
        }
        async with self.pool.connection() as conn, conn.transaction():
            if request.kind == "event" and await self._opens(conn, params):
                # before the row lock, the order conductor_emit takes them in
                await conn.execute(_q("lock_event_waits"), {"key": request.key})
            cur = await conn.execute(_q("lock_lease"), params)
            if await cur.fetchone() is None:
                raise FailedPrecondition("lease_token: the lease is no longer current")
            cur = await conn.execute(_q("get_wait"), params)
            row = await cur.fetchone()
            created_task = None
            if row is None:
                created_task = await self._open(conn, request, params)
            elif row[0] != request.kind or row[1] != request.key:
                raise InvalidArgument(
                    "step", f"step {request.step!r} already waits for something else"
                    f" ({row[0]} {row[1] or ''})".rstrip()
                )
            elif not row[2] and row[3] is not None and row[3] <= now:
                await conn.execute(_q("timeout_wait"), params)
            result = await self._step(conn, params)
            ids: list[int] = []
            if request.kind == "children" and result is None:
                cur = await conn.execute(_q("children_of_step"), params)
                ids = [r[0] for r in await cur.fetchall()]
        return WaitAnswer(result, ids, created_task)

    async def _open(
        self, conn: AsyncConnection[TupleRow], request: WaitRequest, params: dict[str, Any]
    ) -> str | None:
        children = request.children
        remaining = len(children.payloads) if children is not None else 0
        await conn.execute(_q("insert_wait"), {
            **params, "kind": request.kind, "key": request.key, "match": request.match_json,
            "remaining": remaining, "deadline": request.deadline,
        })
        if children is not None:
            await conn.execute(_q("insert_children"), {
                **params, "task": children.task, "queue": children.queue,
                "priority": children.priority, "max_attempts": children.max_attempts,
                "payloads": children.payloads, "parent_id": request.execution_id,
            })
            await conn.execute(_q("notify_ready"), {"task": children.task})
            return children.task
        if request.kind == "signal":
            cur = await conn.execute(_q("first_signal"), {**params, "key": request.key})
            sent = await cur.fetchone()
            if sent is not None:
                result = json.dumps({"signal": json.loads(sent[0])})
                await conn.execute(_q("resolve_wait"), {**params, "result": result})
        if request.kind == "event":  # emitted since the wait began, committed before it
            cur = await conn.execute(_q("first_event_since"), {
                **params, "key": request.key, "match": request.match_json})
            emitted = await cur.fetchone()
            if emitted is not None:
                result = json.dumps({"event": json.loads(emitted[0])})
                await conn.execute(_q("resolve_wait"), {**params, "result": result})
        return None

    async def _opens(self, conn: AsyncConnection[TupleRow], params: dict[str, Any]) -> bool:
        """Whether this call may open the wait (none recorded yet; checked again under the
        row lock)."""
        cur = await conn.execute(_q("get_wait"), params)
        return await cur.fetchone() is None

    async def _step(self, conn: AsyncConnection[TupleRow], params: dict[str, Any]) -> str | None:
        cur = await conn.execute(_q("get_step"), params)
        row = await cur.fetchone()
        return str(row[0]) if row else None

    @retried
    async def signal(
        self, execution_id: int, name: str, payload_json: str, now: datetime
    ) -> str | None:
        """Send a signal; returns the execution's state (None: no such execution). A
        finished execution is left alone (the caller refuses the call)."""
        params = {"id": execution_id, "name": name, "payload": payload_json, "now": now}
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(_q("signal"), params)
            row = await cur.fetchone()
        return row[0] if row else None

    @retried
    async def emit(
        self, event: str, payload_json: str, dedupe_key: str | None, now: datetime
    ) -> list[int]:
        """Emit an event; the ids of the executions it created (none for a used key)."""
        params = {"event": event, "payload": payload_json, "dedupe_key": dedupe_key,
                  "now": now}
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(_q("emit"), params)
            row = await cur.fetchone()
        return list(row[0]) if row and row[0] else []

    async def sync_subscriptions(self, tasks: Iterable[TaskDef]) -> None:
        """Make the event subscriptions of these tasks exactly what they declare."""
        tasks = list(tasks)
        rows = [(t.name, event, filter_json) for t in tasks for event, filter_json in
                t.subscriptions]
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(_q("delete_subscriptions"), {"tasks": [t.name for t in tasks]})
            if rows:
                await conn.execute(_q("insert_subscriptions"), {
                    "tasks": [r[0] for r in rows],
                    "events": [r[1] for r in rows],
                    "filters": [r[2] for r in rows],
                })
