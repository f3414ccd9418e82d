"""The coordinator vacuums the churning tables once they have enough dead rows
(conductor_server/vacuum.py), not only when autovacuum's once-a-minute look comes."""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest

from conductor_server.settings import Settings
from conductor_server.sql import QUERIES
from conductor_server.vacuum import CHURNING, due


def _manual_vacuums(db, table: str) -> int:
    (n,) = db.execute("SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = %s",
                      (table,)).fetchone()
    return int(n)


def _churn(db, rows: int) -> None:
    """`rows` dead versions in the executions table: inserted, then updated."""
    db.execute(
        "INSERT INTO conductor_executions (task, run_at, created_at, max_attempts)"
        " SELECT 't', now(), now(), 3 FROM generate_series(1, %s)", (rows,))
    db.execute("UPDATE conductor_executions SET priority = priority + 1")


def test_a_table_with_enough_dead_rows_is_vacuumed_by_the_coordinator(start_coordinator, db):
    before = _manual_vacuums(db, "conductor_executions")
    coordinator = start_coordinator(vacuum_dead_rows=500)
    _churn(db, 2000)
    deadline = time.monotonic() + 30
    while _manual_vacuums(db, "conductor_executions") == before:
        assert time.monotonic() < deadline, "the coordinator did not vacuum within 30 s"
        time.sleep(0.1)
    dead = db.execute("SELECT n_dead_tup FROM pg_stat_user_tables"
                      " WHERE relname = 'conductor_executions'").fetchone()[0]
    assert dead < 500
    metrics = coordinator.coordinator.metrics
    assert metrics.vacuums.labels("conductor_executions")._value.get() >= 1


def test_zero_leaves_vacuuming_to_autovacuum(start_coordinator):
    coordinator = start_coordinator(vacuum_dead_rows=0)
    assert coordinator.coordinator.vacuum is not None
    assert coordinator.coordinator.vacuum._task is None


def test_a_role_that_does_not_own_the_tables_is_told_it_cannot_vacuum(db, database_url):
    role = f"conductor_t_{uuid.uuid4().hex[:12]}"  # roles belong to the whole server
    db.execute(f"CREATE ROLE {role}")
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            assert conn.execute(QUERIES["can_vacuum"], {"tables": list(CHURNING)}).fetchone()[0]
            conn.execute(f"SET ROLE {role}")
            assert not conn.execute(QUERIES["can_vacuum"],
                                    {"tables": list(CHURNING)}).fetchone()[0]
    finally:
        db.execute(f"DROP ROLE {role}")


def test_dead_rows_counts_every_churning_table(db):
    rows = db.execute(QUERIES["dead_rows"], {"tables": list(CHURNING)}).fetchall()
    assert sorted(r[0] for r in rows) == sorted(CHURNING)


@pytest.mark.parametrize(("dead", "live", "expected"), [
    (10_000, 0, True), (9_999, 0, False), (10_000, 200_000, True), (10_000, 200_001, False),
    (10**9, 10**9, True)])
def test_due_needs_the_count_and_a_twentieth_of_the_live_rows(dead, live, expected):
    assert due(dead, live, 10_000) is expected
    assert due(dead, live, 0) is False


@pytest.mark.parametrize("bad", [-1, 10**13, True])
def test_bad_dead_row_counts_are_refused_naming_the_flag(bad):
    with pytest.raises(ValueError, match="--vacuum-dead-rows"):
        Settings(vacuum_dead_rows=bad)
