"""Migration 0020: executions are deleted with their rows in every other table by one
set-based function (no foreign-key cascades), and nothing is written for an execution
that is being deleted."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import psycopg

from conductor_server.sql import QUERIES

#: the tables whose rows belong to one execution (column execution_id)
OWNED = ("conductor_steps", "conductor_attempts", "conductor_waits", "conductor_signals",
         "conductor_execution_logs")
#: tables that name an execution without belonging to it (a throttle window's first
#: execution, kept per task and key until the window ends)
REFERENCING = ("conductor_throttles",)
FINISHED = datetime(2026, 1, 1, tzinfo=UTC)


def _execution(db, state: str = "succeeded") -> int:
    finished = FINISHED if state in ("succeeded", "failed", "cancelled") else None
    (eid,) = db.execute(
        "INSERT INTO conductor_executions (task, run_at, created_at, max_attempts, state,"
        " finished_at) VALUES ('t', now(), now(), 3, %s, %s) RETURNING id",
        (state, finished)).fetchone()
    return int(eid)


def _own_rows(db, eid: int) -> None:
    db.execute("INSERT INTO conductor_steps (execution_id, name, result, created_at)"
               " VALUES (%s, 'a', '1', now()), (%s, 'b', '2', now())", (eid, eid))
    db.execute("INSERT INTO conductor_attempts (execution_id, n, attempt, started_at,"
               " finished_at, outcome) VALUES (%s, 1, 1, now(), now(), 'failed')", (eid,))
    db.execute("INSERT INTO conductor_waits (execution_id, step, kind, created_at)"
               " VALUES (%s, 'w', 'signal', now())", (eid,))
    db.execute("INSERT INTO conductor_signals (execution_id, name, created_at)"
               " VALUES (%s, 'go', now())", (eid,))
    db.execute("INSERT INTO conductor_execution_logs (execution_id, attempt, level, message,"
               " logged_at) VALUES (%s, 1, 'INFO', 'hello', now())", (eid,))


def _counts(db, eid: int) -> dict[str, int]:
    counts = {}
    for table in OWNED:
        (n,) = db.execute(f"SELECT count(*) FROM {table} WHERE execution_id = %s",
                          (eid,)).fetchone()
        counts[table] = n
    (n,) = db.execute("SELECT count(*) FROM conductor_executions WHERE id = %s",
                      (eid,)).fetchone()
    counts["conductor_executions"] = n
    return counts


def _cascade_constraints(db) -> list[str]:
    return [r[0] for r in db.execute(
        "SELECT conname FROM pg_constraint WHERE contype = 'f'"
        " AND confrelid = 'conductor_executions'::regclass").fetchall()]


def test_no_foreign_key_runs_a_query_per_deleted_execution(db):
    assert _cascade_constraints(db) == []


def test_every_table_with_an_execution_id_is_deleted_with_its_execution(db):
    """A table added later that keeps rows per execution must be named in
    conductor_delete_executions, or retention would leave its rows behind for ever."""
    tables = {r[0] for r in db.execute(
        "SELECT c.table_name FROM information_schema.columns c"
        " JOIN information_schema.tables t USING (table_schema, table_name)"
        " WHERE c.column_name = 'execution_id' AND t.table_type = 'BASE TABLE'"
        " AND c.table_name LIKE 'conductor%%'").fetchall()}
    assert tables == set(OWNED) | set(REFERENCING)
    (body,) = db.execute("SELECT prosrc FROM pg_proc WHERE proname = 'conductor_delete_executions'"
                         ).fetchone()
    for table in OWNED:
        assert f"DELETE FROM {table} WHERE execution_id = ANY(p_ids)" in body


def test_retention_deletes_the_rows_of_the_old_finished_ones_only(db):
    old, young, pending = _execution(db), _execution(db), _execution(db, "pending")
    db.execute("UPDATE conductor_executions SET finished_at = %s WHERE id = %s",
               (FINISHED + timedelta(days=2), young))
    for eid in (old, young, pending):
        _own_rows(db, eid)
    (deleted,) = db.execute(QUERIES["delete_expired"], {
        "task": "t", "state": "succeeded", "cutoff": FINISHED + timedelta(days=1),
        "limit": 100}).fetchone()
    assert deleted == 1
    assert set(_counts(db, old).values()) == {0}
    assert _counts(db, young) == {**dict.fromkeys(OWNED, 1), "conductor_steps": 2,
                                  "conductor_executions": 1}
    assert _counts(db, pending)["conductor_steps"] == 2


def test_bulk_delete_takes_final_executions_with_their_rows_and_leaves_others(db):
    done, failed, pending = _execution(db), _execution(db, "failed"), _execution(db, "pending")
    for eid in (done, failed, pending):
        _own_rows(db, eid)
    rows = db.execute(QUERIES["delete_many"], {"ids": [done, failed, pending]}).fetchall()
    assert sorted(r[0] for r in rows) == sorted([done, failed])
    assert set(_counts(db, done).values()) == {0}
    assert set(_counts(db, failed).values()) == {0}
    assert _counts(db, pending)["conductor_execution_logs"] == 1
    assert _counts(db, pending)["conductor_executions"] == 1


def _insert_log(db, ids: list[int]) -> int:
    params = {"ids": ids, "attempts": [1] * len(ids), "levels": ["INFO"] * len(ids),
              "messages": ["late"] * len(ids), "times": [FINISHED] * len(ids), "most": 100}
    with db.transaction():
        db.execute(QUERIES["lock_log_lines"], {"ids": ids})
        return db.execute(QUERIES["insert_log_lines"], params).rowcount


def test_a_log_line_for_an_execution_being_deleted_waits_and_is_dropped_alone(
        db, database_url):
    """Nothing outlives its execution: a log insert that meets a delete in progress waits
    for it and then finds the execution gone; the other execution's line is kept."""
    doomed, kept = _execution(db), _execution(db)
    with psycopg.connect(database_url) as deleter, \
            psycopg.connect(database_url, autocommit=True) as writer:
        deleter.execute(QUERIES["delete_many"], {"ids": [doomed]})  # open transaction
        result: list[int] = []
        inserting = threading.Thread(target=lambda: result.append(_insert_log(writer,
                                                                               [doomed, kept])))
        inserting.start()
        inserting.join(0.5)
        assert inserting.is_alive(), "the insert must wait for the delete's row lock"
        deleter.commit()
        inserting.join(10)
        assert not inserting.is_alive()
    assert result == [1]
    assert _counts(db, doomed)["conductor_execution_logs"] == 0
    assert _counts(db, kept)["conductor_execution_logs"] == 1
