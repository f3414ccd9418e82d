"""A cancel that meets a finishing child in the other lock order (conductor_server/rollbacks.py):
PostgreSQL aborts one side to break the deadlock, and the store runs the aborted transaction
again instead of answering the caller "database unavailable"."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta

import psycopg

from conductor_server.models import State
from conductor_server.store import Store

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _family(db) -> tuple[int, int]:
    """A running parent waiting for its one pending child."""
    (parent,) = db.execute(
        "INSERT INTO conductor_executions (task, run_at, created_at, max_attempts, state,"
        " lease_expires_at, lease_token, worker_id, attempt)"
        " VALUES ('t', %s, %s, 3, 'running', %s, gen_random_uuid(), 'w-1', 1) RETURNING id",
        (NOW, NOW, NOW + timedelta(minutes=5))).fetchone()
    (child,) = db.execute(
        "INSERT INTO conductor_executions (task, run_at, created_at, max_attempts,"
        " parent_id, parent_step) VALUES ('t', %s, %s, 3, %s, 'kids') RETURNING id",
        (NOW, NOW, parent)).fetchone()
    db.execute("INSERT INTO conductor_waits (execution_id, step, kind, remaining, created_at)"
               " VALUES (%s, 'kids', 'children', 1, %s)", (parent, NOW))
    return int(parent), int(child)


def _waits_for_a_lock(db, pid_of_other: int) -> bool:
    rows = db.execute(
        "SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND pid <> %s", (pid_of_other,)).fetchall()
    return bool(rows)


def test_a_cancel_aborted_to_break_a_deadlock_is_run_again(database_url, db, caplog):
    parent, child = _family(db)

    async def scenario() -> tuple[State, str | None] | None:
        store = Store(database_url, pool_size=2)
        await store.open()
        finisher = await psycopg.AsyncConnection.connect(database_url)
        try:
            # the finisher detects late, so that PostgreSQL aborts the cancel (after its own
            # deadlock_timeout) rather than the finisher
            await finisher.execute("SET deadlock_timeout = '60s'")
            await finisher.execute(
                "SELECT 1 FROM conductor_executions WHERE id = %s FOR UPDATE", (child,))
            # the cancel locks the parent, and its cascade waits for the child's row
            cancel = asyncio.create_task(store.cancel(parent, NOW))
            deadline = time.monotonic() + 20
            while not _waits_for_a_lock(db, finisher.info.backend_pid):
                assert time.monotonic() < deadline, "the cancel never waited for the child"
                assert not cancel.done(), "the cancel did not wait for the child's row"
                await asyncio.sleep(0.02)
            # the child finishes: its trigger locks the parent's row, which the cancel holds
            finish = asyncio.create_task(finisher.execute(
                "UPDATE conductor_executions SET state = 'succeeded', finished_at = %s,"
                " result = '1' WHERE id = %s", (NOW, child)))
            # it gets that lock once PostgreSQL has aborted the cancel, and commits; the
            # cancel's next try then finds the child finished
            await asyncio.wait_for(finish, 60)
            await finisher.commit()
            return await asyncio.wait_for(cancel, 60)
        finally:
            await finisher.close()
            await store.close()

    with caplog.at_level(logging.INFO, logger="conductor_server.rollbacks"):
        outcome = asyncio.run(scenario())
    retries = [r for r in caplog.records if "rolled back (DeadlockDetected)" in r.getMessage()]
    assert retries, "PostgreSQL did not abort the cancel: the test did not make the deadlock"
    assert outcome == (State.RUNNING, "w-1")
    (flagged,) = db.execute("SELECT cancel_requested FROM conductor_executions WHERE id = %s",
                            (parent,)).fetchone()
    assert flagged is True
    (state,) = db.execute("SELECT state::text FROM conductor_executions WHERE id = %s",
                          (child,)).fetchone()
    assert state == "succeeded"
    # the finished child resolved its parent's wait once, under the parent's lock
    (remaining, resolved) = db.execute(
        "SELECT remaining, resolved FROM conductor_waits WHERE execution_id = %s",
        (parent,)).fetchone()
    assert (remaining, resolved) == (0, True)
    (steps,) = db.execute("SELECT count(*) FROM conductor_steps WHERE execution_id = %s"
                          " AND name = 'kids'", (parent,)).fetchone()
    assert steps == 1
