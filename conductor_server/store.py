"""The only user of sql/: one async method per named query, domain objects in and out."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, LiteralString

from psycopg import AsyncConnection, sql
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from . import idempotency
from .models import (
    Attempt,
    ErrorInfo,
    Execution,
    Fire,
    InvalidArgument,
    Lease,
    LeaseRef,
    LogLine,
    NewExecutions,
    OutcomeApplied,
    OutcomeKind,
    OutcomeWrite,
    QueueStats,
    RetryPolicy,
    Schedule,
    State,
    Step,
    StepWrite,
    StepWriteResult,
    TaskDef,
    WorkerInfo,
)
from .payload_filter import NO_FILTER, PayloadFilter
from .rollbacks import retried
from .sql import QUERIES, migrations
from .store_flow import FlowStore
from .store_history import HistoryStore

log = logging.getLogger(__name__)

NOTIFY_CHUNK = 7000  # pg_notify payloads must stay under 8000 bytes
#: times an execution's lease may return without an attempt because its worker died before
#: starting it; after that, a lost lease counts an attempt whatever the worker said (bounds
#: a run that kills its worker before the worker's "started" notice gets out)
UNSTARTED_RETURNS = 3


def _q(name: str) -> LiteralString:
    return QUERIES[name]


#: Longest wait for a pooled connection: while the database is down a call fails after this
#: (PoolTimeout: UNAVAILABLE to the caller) instead of running into the caller's deadline.
CONNECTION_WAIT = 5.0
#: A failing reconnect attempt backs off (1 s, 2 s, 4 s ...) for at most this long, then gives
#: up, and the next call starts a fresh one: the pool recovers within seconds of the database
#: coming back, however long it was away (the pool's default of 5 min let the backoff grow to
#: minutes).
RECONNECT_GIVE_UP = 10.0


class Store(HistoryStore, FlowStore):
    """PostgreSQL access for the coordinator (with HistoryStore's queries)."""

    def __init__(self, url: str, pool_size: int = 8) -> None:
        self.url = url
        self.pool: AsyncConnectionPool[AsyncConnection[TupleRow]] = AsyncConnectionPool(
            url, min_size=2, max_size=pool_size, open=False, kwargs={"autocommit": True},
            timeout=CONNECTION_WAIT, reconnect_timeout=RECONNECT_GIVE_UP,
        )

    async def open(self) -> None:
        await self.pool.open(wait=True, timeout=30)

    async def close(self) -> None:
        await self.pool.close()

    # -- schema -------------------------------------------------------------------------

    async def migrate(self) -> list[int]:
        """Apply pending migrations under an advisory lock; returns the versions applied."""
        applied_now = []
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(_q("lock_migrations"))
            await conn.execute(_q("create_migrations_table"))
            cur = await conn.execute(_q("applied_migrations"))
            done = {row[0] for row in await cur.fetchall()}
            for migration in migrations():
                if migration.version in done:
                    continue
                await conn.execute(migration.sql)
                await conn.execute(
                    _q("record_migration"),
                    {"version": migration.version, "name": migration.name},
                )
                applied_now.append(migration.version)
        return applied_now

    async def set_limits(self, max_steps_bytes: int) -> None:
        """Write the limits the database applies to what it records itself (a wait's
        outcome, migration 0018); the most recently started coordinator's apply."""
        async with self.pool.connection() as conn:
            await conn.execute(_q("set_limits"), {"max_steps_bytes": max_steps_bytes})

    # -- tasks --------------------------------------------------------------------------

    async def upsert_tasks(self, tasks: Iterable[TaskDef], now: datetime) -> None:
        tasks = list(tasks)
        params = [
            {
                "name": t.name,
                "max_attempts": t.max_attempts,
                "initial_backoff": t.retry.initial_backoff,
                "max_backoff": t.retry.max_backoff,
                "backoff_multiplier": t.retry.multiplier,
                "backoff_jitter": t.retry.jitter,
                "non_retryable_errors": list(t.retry.non_retryable_errors),
                "window_start": t.window_start,
                "window_end": t.window_end,
                "timezone": t.timezone,
                "concurrency": t.concurrency,
                "retention_succeeded": t.retention.succeeded,
                "retention_failed": t.retention.failed,
                "retention_cancelled": t.retention.cancelled,
                "redact_after": t.retention.redact_after,
                "timeout": t.timeout,
                "on_failure": t.on_failure,
                "key_path": list(t.key_path) or None,
                "key_concurrency": t.key_concurrency,
                "rate_limit_name": t.rate_limit_name or None,
                "rate_limit_count": t.rate_count,
                "rate_limit_period": t.rate_period,
                "queue": t.queue,
                "now": now,
            }
            for t in sorted(tasks, key=lambda t: t.name)
        ]
        keyed = [t.name for t in tasks if t.keyed]
        async with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.executemany(_q("upsert_task"), params)
            if keyed:
                await cur.execute(_q("backfill_keys"), {"tasks": keyed})

    async def get_task(self, name: str) -> TaskDef | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("get_task"), {"name": name})
            row = await cur.fetchone()
        if row is None:
            return None
        return TaskDef(
            name=row[0],
            max_attempts=row[1],
            retry=RetryPolicy(row[2], row[3], row[4], row[5], tuple(row[6])),
            window_start=row[7],
            window_end=row[8],
            timezone=row[9],
            concurrency=row[10],
            timeout=row[11],
            on_failure=row[12],
            key_path=tuple(row[13] or ()),
            key_concurrency=row[14],
            rate_limit_name=row[15] or "",
            rate_count=row[16],
            rate_period=row[17],
            queue=row[18],
        )

    # -- invoking -----------------------------------------------------------------------

    async def insert_executions(
        self, new: NewExecutions, now: datetime, request_id: str | None = None
    ) -> tuple[list[int], list[bool]]:
        """Insert executions; returns their ids and, per payload, whether it was created
        (False: its dedupe key was held).

        With a `request_id` already used by an earlier call, returns that call's answer and
        inserts nothing (see idempotency.py)."""
        base = {
            "task": new.task,
            "queue": new.queue,
            "priority": new.priority,
            "run_at": new.run_at,
            "now": now,
            "max_attempts": new.max_attempts,
            "trace_context": new.trace_context,
            "timeout": new.timeout,
            "concurrency_key": new.concurrency_key,
            "keyed": new.keyed,
            "key_path": list(new.key_path),
        }
        async with self.pool.connection() as conn, conn.transaction():
            if request_id is not None:
                answered = await self._claim_request(conn, request_id, new, now)
                if answered is not None:
                    return answered
            if new.dedupe_key is not None or any(new.dedupe_keys):
                if new.dedupe_key is not None:
                    ids, one = await self._insert_keyed(conn, new, base, now)
                    created, per_item = [one], None
                else:
                    ids, created = await self._insert_batch_keyed(conn, new, base)
                    per_item = created
                if request_id is not None:
                    await conn.execute(_q("record_invoke_request"), {
                        "request_id": request_id, "ids": ids, "created": any(created),
                        "created_items": per_item})
            else:
                params = {**base, "payloads": new.payloads, "request_id": request_id}
                cur = await conn.execute(_q("insert_executions"), params)
                ids = sorted(row[0] for row in await cur.fetchall())
                created = [True] * len(ids)
            if any(created):
                await conn.execute(_q("notify_ready"), {"task": new.task})
        return ids, created

    async def _claim_request(
        self, conn: AsyncConnection[TupleRow], request_id: str, new: NewExecutions, now: datetime
    ) -> tuple[list[int], list[bool]] | None:
        """None: the id is ours now (record the answer before commit); else the answer of the
        first call with this id."""
        params = {
            "request_id": request_id,
            "task": new.task,
            "size": len(new.payloads),
            "now": now,
            "expired_before": now - idempotency.RETENTION,
        }
        while True:
            cur = await conn.execute(_q("claim_invoke_request"), params)
            if await cur.fetchone() is not None:
                return None
            cur = await conn.execute(_q("get_invoke_request"), params)
            row = await cur.fetchone()
            if row is None:
                continue  # deleted as expired between the two statements: claim it anew
            task, size, ids, created, per_item = row
            if (task, size) != (new.task, len(new.payloads)):
                raise InvalidArgument(
                    "request_id",
                    f"already used by an invoke of {size} payload(s) of task {task!r}",
                )
            return list(ids), list(per_item) if per_item is not None else [created] * len(ids)

    async def _insert_batch_keyed(
        self, conn: AsyncConnection[TupleRow], new: NewExecutions, base: dict[str, Any]
    ) -> tuple[list[int], list[bool]]:
        """A batch whose items carry dedupe keys (some may not): one execution per distinct
        key unless an unfinished one holds it, and one per item without a key. Returns the
        ids in item order and whether each item created its own."""
        firsts: dict[str, int] = {}  # key -> the index of its first item
        plain: list[int] = []
        for i, key in enumerate(new.dedupe_keys):
            if key is None:
                plain.append(i)
            else:
                firsts.setdefault(key, i)
        ids: list[int] = [0] * len(new.payloads)
        created = [False] * len(new.payloads)
        if plain:
            params = {**base, "payloads": [new.payloads[i] for i in plain], "request_id": None}
            cur = await conn.execute(_q("insert_executions"), params)
            for i, row in zip(plain, sorted(r[0] for r in await cur.fetchall()), strict=True):
                ids[i], created[i] = row, True
        holders: dict[str, int] = {}
        # in key order: concurrent batches with common keys then wait for each other's
        # inserts in one order, which cannot deadlock
        waiting = sorted(firsts)
        while waiting:
            cur = await conn.execute(_q("insert_deduped_batch"), {
                **base, "payloads": [new.payloads[firsts[k]] for k in waiting],
                "dedupe_keys": waiting})
            for key, execution_id in await cur.fetchall():
                holders[key] = execution_id
                created[firsts[key]] = True
            held = [k for k in waiting if k not in holders]
            if held:
                cur = await conn.execute(_q("find_deduped_batch"), {**base, "dedupe_keys": held})
                holders.update((row[0], row[1]) for row in await cur.fetchall())
            # a holder that finished between the two statements: try its key again
            waiting = [k for k in held if k not in holders]
        for i, key in enumerate(new.dedupe_keys):
            if key is not None:
                ids[i] = holders[key]
        return ids, created

    async def _insert_keyed(
        self, conn: AsyncConnection[TupleRow], new: NewExecutions, base: dict[str, Any],
        now: datetime,
    ) -> tuple[list[int], bool]:
        """An invoke with a dedupe key, debounced or throttled or neither."""
        params = {**base, "payload": new.payloads[0], "dedupe_key": new.dedupe_key,
                  "until": now + timedelta(seconds=new.throttle)}
        if new.debounce:
            cur = await conn.execute(_q("debounce_execution"), params)
            row = await cur.fetchone()
            if row is not None:
                return [row[0]], False
        if new.throttle:
            cur = await conn.execute(_q("claim_throttle"), params)
            if await cur.fetchone() is None:
                cur = await conn.execute(_q("throttled_execution"), params)
                row = await cur.fetchone()
                if row is not None and row[0]:
                    return [row[0]], False
            ids, created = await self._insert_deduped(conn, new, base)
            await conn.execute(_q("record_throttle"), {**params, "execution_id": ids[0]})
            return ids, created
        return await self._insert_deduped(conn, new, base)

    async def _insert_deduped(
        self, conn: AsyncConnection[TupleRow], new: NewExecutions, base: dict[str, Any]
    ) -> tuple[list[int], bool]:
        params = {**base, "payload": new.payloads[0], "dedupe_key": new.dedupe_key}
        while True:
            cur = await conn.execute(_q("insert_deduped_execution"), params)
            row = await cur.fetchone()
            if row is not None:
                return [row[0]], True
            cur = await conn.execute(_q("find_deduped_execution"), params)
            row = await cur.fetchone()
            if row is not None:
                return [row[0]], False
            # the holder finished between the two statements: try again

    # -- leasing ------------------------------------------------------------------------

    async def lease(
        self,
        task: str,
        limit: int,
        worker_id: str,
        now: datetime,
        expires_at: datetime,
        cap: int = 0,
        queues: Sequence[str] | None = None,
        flow: TaskDef | None = None,
        paused: bool = False,
        *,
        lease_now: datetime | None = None,
        task_timeout: float | None = None,
        timeout_grace: float = 0.0,
    ) -> list[Lease]:
        """Lease up to `limit` ready executions of `task` (from `queues` only, if given);
        with a concurrency `cap` (> 0), never more than `cap` running in all, whatever other
        coordinators lease meanwhile. With `flow` (a task whose definition is limited, see
        TaskDef.limited) or `paused` (a RateLimited pause may hold it), its per-key caps,
        rate limit and pauses apply too (flow_lease). An execution with a timeout (its own,
        else `task_timeout`) gets the deadline `lease_now` (real time) + timeout +
        `timeout_grace`."""
        params: dict[str, Any] = {
            "task": task,
            "limit": limit,
            "worker_id": worker_id,
            "now": now,
            "expires_at": expires_at,
            "cap": cap,
            "lease_now": lease_now or now,
            "task_timeout": task_timeout,
            "grace": timeout_grace,
            "queues": list(queues) if queues is not None else None,
        }
        if flow is not None and (flow.limited or paused):
            rows = await self._lease_limited(params, flow)
        else:
            async with self.pool.connection() as conn, (
                conn.transaction() if cap > 0 else contextlib.nullcontext()
            ):
                if cap > 0:  # held until the lease commits: see lock_capped_task
                    await conn.execute(_q("lock_capped_task"), params)
                cur = await conn.execute(_q("lease"), params)
                rows = await cur.fetchall()
        return [
            Lease(
                execution_id=row[0],
                task=task,
                token=str(row[1]),
                attempt=row[2],
                max_attempts=row[3],
                payload_json=row[4],
                steps=json.loads(row[5]) if row[5] else {},
                granted_at=now,
                schedule=row[6],
                fire_time=row[7],
                ready_at=row[8],
                priority=row[9],
                trace_context=row[10],
                timeout=row[11] or 0.0,
            )
            for row in sorted(rows, key=lambda r: r[0])
        ]

    async def _lease_limited(self, params: dict[str, Any], flow: TaskDef) -> list[TupleRow]:
        """One transaction: the task's lock (and the rate bucket's), the tokens, the lease,
        the tokens spent. Keyed tasks take per-key caps and buckets in one statement."""
        rated = flow.rate_count > 0
        params = {
            **params, "key_cap": flow.key_concurrency, "bucket": flow.bucket,
            "rate_count": flow.rate_count, "rate_period": flow.rate_period or 1.0,
            "rated": True, "key": "",
        }
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(_q("lock_capped_task"), params)
            if rated:
                await conn.execute(_q("lock_rate_bucket"), params)
            if flow.keyed:
                cur = await conn.execute(_q("lease_keyed"), params)
                rows = await cur.fetchall()
            else:
                cur = await conn.execute(_q("bucket_tokens"), params)
                row = await cur.fetchone()
                tokens = int(row[0]) if row is not None else (
                    flow.rate_count if rated else params["limit"])
                if tokens <= 0:
                    return []
                params["limit"] = min(params["limit"], tokens)
                cur = await conn.execute(_q("lease"), params)
                rows = [(*r, "") for r in await cur.fetchall()]
            if rated and rows:
                spent: dict[str, int] = {}
                for r in rows:
                    spent[r[12] or ""] = spent.get(r[12] or "", 0) + 1
                await conn.execute(_q("spend_tokens"), {
                    **params, "keys": list(spent), "counts": list(spent.values())})
        return [r[:12] for r in rows]

    async def pause_buckets(
        self, pauses: Sequence[tuple[int, datetime]], now: datetime
    ) -> list[str]:
        """RateLimited(retry_after) from these executions: nothing is leased under their
        task's rate bucket (their key's, for a keyed task) before the time given. Tells the
        other coordinators; returns the bucket names."""
        params = {"ids": [p[0] for p in pauses], "untils": [p[1] for p in pauses], "now": now}
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("pause_buckets"), params)
            buckets = sorted({row[0] for row in await cur.fetchall()})
            for bucket in buckets:
                await conn.execute(_q("notify"), {"channel": "conductor_paused",
                                                  "payload": bucket})
        return buckets

    async def active_pauses(self, now: datetime) -> list[tuple[str, str, datetime]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("active_pauses"), {"now": now})
            return [(r[0], r[1], r[2]) for r in await cur.fetchall()]

    async def next_run_at(self, task: str) -> datetime | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("next_run_at"), {"task": task})
            row = await cur.fetchone()
        return row[0] if row else None

    async def ready_exists(self, tasks: Sequence[str], now: datetime) -> bool:
        """Is any execution of these tasks runnable at `now`?"""
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("ready_exists"), {"tasks": list(tasks), "now": now})
            row = await cur.fetchone()
        return bool(row and row[0])

    async def running_count(self, task: str) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("running_count"), {"task": task})
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def renew_leases(
        self, refs: Sequence[LeaseRef], expires_at: datetime, worker_id: str = ""
    ) -> dict[int, tuple[str, bool]]:
        """Extend leases held by `worker_id` ("": any); returns {id: (task, cancel
        requested)} of those still current."""
        if not refs:
            return {}
        refs = sorted(refs, key=_by_id)  # rows are locked in id order: see _apply_kind
        params = _lease_params(refs, expires_at=expires_at, worker_id=worker_id)
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("renew_leases"), params)
            return {row[0]: (row[1], row[2]) for row in await cur.fetchall()}

    async def leases_of_worker(self, worker_id: str) -> list[tuple[LeaseRef, str]]:
        """The current leases granted to a worker, with their tasks."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("leases_of_worker"), {"worker_id": worker_id})
            return [(LeaseRef(row[0], str(row[1])), row[2]) for row in await cur.fetchall()]

    async def expired_leases(
        self, now: datetime, limit: int = 1000
    ) -> list[tuple[LeaseRef, bool, bool]]:
        """Expired leases, each with whether it never started (and may return without an
        attempt: see return_unstarted), then attempts past their deadline (execution
        timeout); the third item tells which."""
        params = {"now": now, "limit": limit, "max_returns": UNSTARTED_RETURNS}
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("expired_leases"), params)
            return [(LeaseRef(row[0], str(row[1])), row[2], row[3])
                    for row in await cur.fetchall()]

    async def shift_deadlines(
        self, changes: Sequence[tuple[LeaseRef, bool]], lease_now: datetime, grace: float
    ) -> None:
        """Suspend (False) or restart from `lease_now` (True) the deadlines of timed
        attempts (see deadlines.py); a deadline that has passed stays passed."""
        changes = sorted(changes, key=lambda c: _by_id(c[0]))  # rows locked in id order
        params = {
            "ids": [ref.execution_id for ref, _ in changes],
            "tokens": [ref.token for ref, _ in changes],
            "started": [started for _, started in changes],
            "lease_now": lease_now,
            "grace": grace,
        }
        async with self.pool.connection() as conn:
            await conn.execute(_q("shift_deadlines"), params)

    async def mark_unstarted(
        self, refs: Sequence[LeaseRef], worker_id: str, renewed_until: datetime
    ) -> None:
        """A worker's stream ended while it held these leases without having started them."""
        if not refs:
            return
        params = _lease_params(refs, worker_id=worker_id, renewed_until=renewed_until)
        async with self.pool.connection() as conn:
            await conn.execute(_q("mark_unstarted"), params)

    async def return_unstarted(
        self, refs: Sequence[LeaseRef], now: datetime, lease_now: datetime
    ) -> list[OutcomeApplied]:
        """Give expired, never-started leases back without counting an attempt."""
        if not refs:
            return []
        params = _lease_params(refs, now=now, lease_now=lease_now, max_returns=UNSTARTED_RETURNS)
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("return_unstarted"), params)
            return [
                OutcomeApplied(row[0], row[1], State(row[2]), row[3])
                for row in await cur.fetchall()
            ]

    # -- writes from workers (group-committed by the dispatcher) ---------------------------

    async def save_steps(
        self, writes: Sequence[StepWrite], now: datetime, lease_now: datetime | None = None
    ) -> list[StepWriteResult]:
        """Record step results of current leases; stale writes (and those past their
        attempt's deadline, in real time `lease_now`) change nothing."""
        ids, tokens, names, results, workers = (
            list(column) for column in zip(*writes, strict=True)
        )
        params = {"ids": ids, "tokens": tokens, "names": names, "results": results,
                  "workers": workers, "now": now, "lease_now": lease_now or now}
        recorded: list[StepWriteResult] = [None] * len(writes)
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("save_steps"), params)
            for n, text in await cur.fetchall():
                recorded[n - 1] = text
        return recorded

    async def apply_outcomes(
        self, writes: Sequence[OutcomeWrite], now: datetime, lease_now: datetime
    ) -> list[OutcomeApplied | None]:
        """Apply completions, failures and releases in one transaction.

        Returns, per write, what it did, or None when its lease was stale. A write that was
        already applied (resent after a reconnect) is reported as applied again.
        """
        by_kind: dict[OutcomeKind, list[OutcomeWrite]] = {kind: [] for kind in OutcomeKind}
        for w in writes:
            by_kind[w.kind].append(w)
        applied: dict[int, OutcomeApplied] = {}
        # Each kind is one statement (which also notifies other coordinators); no transaction
        # spans them: every write stands alone, and the worker resends what was not acked.
        async with self.pool.connection() as conn:
            for kind, items in by_kind.items():
                if items:
                    for row in await self._apply_kind(conn, kind, items, now, lease_now):
                        applied[row[0]] = OutcomeApplied(row[0], row[1], State(row[2]), row[3])
            missing = {w.lease.execution_id for w in writes if w.lease.execution_id not in applied}
            current = await self._lease_states(conn, missing) if missing else {}
        results: list[OutcomeApplied | None] = []
        for w in writes:
            eid = w.lease.execution_id
            if eid in applied:
                results.append(applied[eid])
            elif not w.lost and _already_applied(w.lease, current.get(eid)):
                # a write resent after a reconnect: the token still marks it as this run's
                results.append(OutcomeApplied(eid, "", current[eid][1], None))
            else:
                results.append(None)
        return results

    @retried
    async def _apply_kind(
        self,
        conn: AsyncConnection[TupleRow],
        kind: OutcomeKind,
        items: list[OutcomeWrite],
        now: datetime,
        lease_now: datetime,
    ) -> list[TupleRow]:
        # Every multi-row write to executions (outcomes, lease renewals) names its rows in id
        # order, so that two of them lock rows in the same order and cannot deadlock.
        items = sorted(items, key=lambda w: w.lease.execution_id)
        ids = [w.lease.execution_id for w in items]
        tokens = [w.lease.token for w in items]
        if kind is OutcomeKind.COMPLETED:
            params: dict[str, Any] = {"results": [w.result_json for w in items]}
        elif kind is OutcomeKind.FAILED:
            params = {
                "errors": [json.dumps(_error_dict(w.error)) for w in items],
                "retryable": [w.retryable for w in items],
                "lost": [w.lost for w in items],
            }
        else:
            params = {"run_ats": [w.run_at for w in items], "reasons": [w.reason for w in items]}
        workers = [w.worker_id for w in items]
        cur = await conn.execute(
            _q(_OUTCOME_QUERY[kind]),
            {"ids": ids, "tokens": tokens, "workers": workers, "now": now,
             "lease_now": lease_now, **params},
        )
        return await cur.fetchall()

    async def _lease_states(
        self, conn: AsyncConnection[TupleRow], ids: Iterable[int]
    ) -> dict[int, tuple[str | None, State]]:
        cur = await conn.execute(_q("lease_states"), {"ids": sorted(ids)})
        return {
            row[0]: (str(row[1]) if row[1] else None, State(row[2]))
            for row in await cur.fetchall()
        }

    async def _notify(
        self, conn: AsyncConnection[TupleRow], channel: LiteralString, ids: list[str]
    ) -> None:
        chunk: list[str] = []
        size = 0
        for eid in [*ids, None]:
            if eid is None or size + len(eid) + 1 > NOTIFY_CHUNK:
                if chunk:
                    await conn.execute(
                        _q("notify"), {"channel": channel, "payload": ",".join(chunk)}
                    )
                chunk, size = [], 0
            if eid is not None:
                chunk.append(eid)
                size += len(eid) + 1

    # -- client reads and cancellation ----------------------------------------------------

    async def finished_among(self, ids: Sequence[int]) -> list[int]:
        """Which of these executions are finished (for waiters after a '*' notification)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("finished_among"), {"ids": list(ids)})
            return [row[0] for row in await cur.fetchall()]

    async def cancel(self, execution_id: int, now: datetime) -> tuple[State, str | None] | None:
        """Cancel; returns (state after, worker id) or None when not pending/running."""
        rows = await self.cancel_many([execution_id], now, again=True)
        return (State(rows[0][1]), rows[0][2]) if rows else None

    async def get_execution(self, execution_id: int) -> Execution | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("get_execution"), {"id": execution_id})
            row = await cur.fetchone()
        return _execution(row) if row else None

    async def _execution_in(self, conn: AsyncConnection[TupleRow], execution_id: int) -> Execution:
        cur = await conn.execute(_q("get_execution"), {"id": execution_id})
        row = await cur.fetchone()
        assert row is not None, "read in the transaction that wrote it"
        return _execution(row)

    async def list_executions(
        self,
        *,
        task: str | None,
        states: Sequence[State] | None,
        queue: str | None,
        before_id: int | None,
        limit: int,
        parent_id: int | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        payload: PayloadFilter = NO_FILTER,
    ) -> list[Execution]:
        params = {
            "task": task,
            "parent_id": parent_id,
            "created_after": created_after,
            "created_before": created_before,
            "match": payload.match_json,
            "contains": payload.contains_json,
            "states": [s.value for s in states] if states else None,
            "queue": queue,
            "before_id": before_id,
            "limit": limit,
        }
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("list_executions"), params)
            return [_execution(row) for row in await cur.fetchall()]

    async def list_steps(self, execution_id: int) -> list[Step]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("list_steps"), {"id": execution_id})
            return [Step(row[0], row[1], row[2]) for row in await cur.fetchall()]

    async def list_attempts(self, execution_id: int) -> list[Attempt]:
        """The ended runs of an execution, oldest first (the one running now is not here)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("list_attempts"), {"id": execution_id})
            return [_attempt(row) for row in await cur.fetchall()]
    async def ping(self) -> None:
        """Raises when the database does not answer."""
        async with self.pool.connection() as conn:
            await conn.execute(_q("ping"))

    async def insert_log_lines(self, lines: Sequence[LogLine], most: int) -> None:
        """Store log lines of existing executions, at most `most` per execution."""
        if not lines:
            return
        params = {
            "ids": [x.execution_id for x in lines], "attempts": [x.attempt for x in lines],
            "levels": [x.level for x in lines], "messages": [x.message for x in lines],
            "times": [x.logged_at for x in lines], "most": most,
        }
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(_q("lock_log_lines"), params)
            await conn.execute(_q("insert_log_lines"), params)

    async def list_log_lines(self, execution_id: int, after: int, limit: int) -> list[LogLine]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                _q("list_log_lines"), {"id": execution_id, "after": after, "limit": limit}
            )
            return [LogLine(execution_id, r[1], r[2], r[3], r[4], r[0])
                    for r in await cur.fetchall()]

    # -- schedules ----------------------------------------------------------------------

    async def put_schedule(self, schedule: Schedule, now: datetime) -> Schedule:
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("put_schedule"), _schedule_params(schedule, now))
            row = await cur.fetchone()
        assert row is not None
        return _schedule(row)

    async def sync_static_schedules(
        self, task: str, schedules: Sequence[Schedule], now: datetime
    ) -> None:
        """Make the task's static schedules exactly `schedules` (dynamic ones are kept)."""
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                _q("delete_stale_static_schedules"),
                {"task": task, "names": [s.name for s in schedules]},
            )
            for (dropped,) in await cur.fetchall():  # like DeleteSchedule: drop pending fires
                params = {"task": task, "name": dropped, "now": now}
                await conn.execute(_q("cancel_schedule_fires"), params)
            for schedule in schedules:
                await conn.execute(_q("put_schedule"), _schedule_params(schedule, now))

    @retried
    async def delete_schedule(self, task: str, name: str, now: datetime) -> int | None:
        """Delete a schedule and cancel its pending fires; None when it does not exist."""
        params = {"task": task, "name": name, "now": now}
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(_q("delete_schedule"), params)
            if await cur.fetchone() is None:
                return None
            cur = await conn.execute(_q("cancel_schedule_fires"), params)
            cancelled = [str(row[0]) for row in await cur.fetchall()]
            await self._notify(conn, "conductor_finished", cancelled)
        return len(cancelled)

    async def list_schedules(self, task: str | None) -> list[Schedule]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("list_schedules"), {"task": task})
            return [_schedule(row) for row in await cur.fetchall()]

    async def next_schedule_due(self) -> datetime | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("next_schedule_due"))
            row = await cur.fetchone()
        return row[0] if row else None

    async def fire_schedules(
        self,
        now: datetime,
        plan: Callable[[Schedule], tuple[list[Fire], datetime]],
        limit: int = 1000,
    ) -> tuple[int, list[str]] | None:
        """Fire due schedules in one transaction: `plan` says which fire times to create and
        the next fire time of each. Returns (schedules handled, tasks of new executions), or
        None when another coordinator holds the scheduler lock."""
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(_q("try_scheduler_lock"))
            row = await cur.fetchone()
            if not row or not row[0]:
                return None
            cur = await conn.execute(_q("due_schedules"), {"now": now, "limit": limit})
            due = [_schedule(r) for r in await cur.fetchall()]
            if not due:
                return 0, []
            fires: list[Fire] = []
            nexts: list[datetime] = []
            for schedule in due:
                planned, next_at = plan(schedule)
                fires += planned
                nexts.append(next_at)
            created: list[str] = []
            if fires:
                cur = await conn.execute(
                    _q("insert_fires"),
                    {
                        "tasks": [f.task for f in fires],
                        "names": [f.schedule for f in fires],
                        "payloads": [f.payload_json for f in fires],
                        "fire_times": [f.fire_time for f in fires],
                        "now": now,
                    },
                )
                created = [r[0] for r in await cur.fetchall()]
            await conn.execute(
                _q("set_next_fires"),
                {
                    "tasks": [s.task for s in due],
                    "names": [s.name for s in due],
                    "next_fire_ats": nexts,
                },
            )
            for task in sorted(set(created)):
                await conn.execute(_q("notify_ready"), {"task": task})
        return len(due), created

    # -- workers and queues (inspection, metrics) ---------------------------------------

    async def upsert_worker(self, worker: WorkerInfo) -> None:
        params = {
            "worker_id": worker.worker_id,
            "hostname": worker.hostname,
            "pid": worker.pid,
            "tasks": list(worker.tasks),
            "coordinator": worker.coordinator,
            "leases": worker.leases,
            "capacity": worker.capacity,
            "queues": list(worker.queues) if worker.queues is not None else None,
            "now": worker.connected_at,
        }
        async with self.pool.connection() as conn:
            await conn.execute(_q("upsert_worker"), params)

    async def touch_worker(self, worker_id: str, leases: int, now: datetime) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                _q("touch_worker"), {"worker_id": worker_id, "leases": leases, "now": now}
            )

    async def disconnect_worker(self, worker_id: str, coordinator: str, now: datetime) -> None:
        params = {"worker_id": worker_id, "coordinator": coordinator, "now": now}
        async with self.pool.connection() as conn:
            await conn.execute(_q("disconnect_worker"), params)

    async def list_workers(self, seen_after: datetime) -> list[WorkerInfo]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("list_workers"), {"seen_after": seen_after})
            return [
                WorkerInfo(r[0], r[1], r[2], tuple(r[3]), r[4], r[5], r[6], r[7], r[8],
                           tuple(r[9]) if r[9] is not None else None)
                for r in await cur.fetchall()
            ]

    async def task_activity(
        self, since: datetime, until: datetime, bucket_seconds: float
    ) -> list[tuple[str, str, int, int]]:
        """(task, final state, bucket, count) of executions finished in [since, until)."""
        params = {"since": since, "until": until, "bucket": bucket_seconds}
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("task_activity"), params)
            return [(r[0], r[1], r[2], r[3]) for r in await cur.fetchall()]

    async def queue_stats(self, now: datetime, seen_after: datetime) -> list[QueueStats]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(_q("queue_stats"), {"now": now, "seen_after": seen_after})
            return [QueueStats(*r) for r in await cur.fetchall()]

    # -- notifications ------------------------------------------------------------------

    async def listen(self, *channels: str) -> AsyncIterator[tuple[str, str]]:
        """Yield (channel, payload) for NOTIFYs on the channels, on a dedicated connection."""
        async with await AsyncConnection.connect(self.url, autocommit=True) as conn:
            for channel in channels:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            async for notify in conn.notifies():
                yield notify.channel, notify.payload


def _lease_params(refs: Sequence[LeaseRef], **more: Any) -> dict[str, Any]:
    """Query parameters naming leases (ids and tokens, in order), plus `more`."""
    return {"ids": [r.execution_id for r in refs], "tokens": [r.token for r in refs], **more}


_OUTCOME_QUERY = {
    OutcomeKind.COMPLETED: "complete",
    OutcomeKind.FAILED: "fail",
    OutcomeKind.RELEASED: "release",
}


def _by_id(ref: LeaseRef) -> int:
    return ref.execution_id


def _already_applied(lease: LeaseRef, current: tuple[str | None, State] | None) -> bool:
    return current is not None and current[0] == lease.token and current[1] != State.RUNNING


def _schedule_params(schedule: Schedule, now: datetime) -> dict[str, Any]:
    return {
        "task": schedule.task,
        "name": schedule.name,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "payload": schedule.payload_json,
        "static": schedule.static,
        "missed": schedule.missed,
        "missed_limit": schedule.missed_limit,
        "next_fire_at": schedule.next_fire_at,
        "now": now,
    }


def _error_dict(error: ErrorInfo | None) -> dict[str, str]:
    if error is None:
        return {"type": "Error", "message": "", "traceback": ""}
    return {"type": error.type, "message": error.message, "traceback": error.traceback}


def _execution(row: TupleRow) -> Execution:
    return Execution(
        id=row[0],
        task=row[1],
        queue=row[2],
        state=State(row[3]),
        payload_json=row[4],
        result_json=row[5],
        error=_error_info(row[6]),
        priority=row[7],
        run_at=row[8],
        created_at=row[9],
        started_at=row[10],
        finished_at=row[11],
        attempt=row[12],
        max_attempts=row[13],
        dedupe_key=row[14],
        cancel_requested=row[15],
        schedule=row[16],
        fire_time=row[17],
        parent_id=row[18],
        waiting_for=row[19],
        runs=row[20],
        leased_at=row[21],
        worker_id=row[22],
        rerun_of=row[23],
        redacted_at=row[24],
        dead_letter_of=row[25],
        timeout=row[26],
        concurrency_key=row[27] if len(row) > 27 else None,
    )


def _error_info(text: str | None) -> ErrorInfo | None:
    if not text:
        return None
    error = json.loads(text)
    return ErrorInfo(error.get("type", ""), error.get("message", ""), error.get("traceback", ""))


def _attempt(row: TupleRow) -> Attempt:
    return Attempt(
        n=row[0],
        attempt=row[1],
        worker_id=row[2] or "",
        started_at=row[3],
        finished_at=row[4],
        outcome=row[5],
        reason=row[6],
        error=_error_info(row[7]),
    )


def _schedule(row: TupleRow) -> Schedule:
    return Schedule(
        task=row[0],
        name=row[1],
        cron=row[2],
        timezone=row[3],
        payload_json=row[4],
        static=row[5],
        missed=row[6],
        missed_limit=row[7],
        next_fire_at=row[8],
    )
