"""S9-delete: what retention's delete statement costs the database per execution, with the
set-based delete of migration 0020 against the foreign-key cascades it replaced (added
back for the comparison, in the same scratch database), with and without rows of their own
(two steps and an attempt per execution). Backend CPU from /proc, so the figures hold on a
busy machine too."""

from __future__ import annotations

from typing import Any

import psycopg

from conductor_server.sql import QUERIES

from .harness import Result, cpu_seconds
from .scenarios import Run

S9D_ROWS = 100_000
S9D_BATCH = 1_000
OWNED = ("conductor_steps", "conductor_attempts", "conductor_waits", "conductor_signals",
         "conductor_execution_logs")
#: the statement retention ran before migration 0020 (the cascades did the rest)
CASCADING_DELETE = """
WITH deleted AS (
    DELETE FROM conductor_executions WHERE id IN (
        SELECT id FROM conductor_executions
        WHERE task = %(task)s AND state = %(state)s::conductor_execution_state
            AND finished_at < %(cutoff)s
        ORDER BY finished_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
    RETURNING 1
)
SELECT count(*) FROM deleted"""


def _fill(db: psycopg.Connection[Any], rows: int, own_rows: bool) -> None:
    db.execute(
        "INSERT INTO conductor_executions (task, run_at, created_at, max_attempts, state,"
        " finished_at, payload, result) SELECT 'bench-delete', now(), now(), 3, 'succeeded',"
        " now() - interval '1 hour' + g * interval '1 ms', 'null', 'null'"
        " FROM generate_series(1, %s) g", (rows,))
    if own_rows:
        db.execute("INSERT INTO conductor_attempts (execution_id, n, attempt, started_at,"
                   " finished_at, outcome) SELECT id, 1, 1, now(), now(), 'failed'"
                   " FROM conductor_executions")
        db.execute("INSERT INTO conductor_steps (execution_id, name, result, created_at)"
                   " SELECT id, 's' || g, 'null', now() FROM conductor_executions,"
                   " generate_series(1, 2) g")
    db.execute("VACUUM ANALYZE")


def _drain(db: psycopg.Connection[Any], statement: str) -> tuple[int, float]:
    """Run `statement` until it deletes less than a batch; (rows, backend CPU seconds)."""
    pid = db.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
    params = {"task": "bench-delete", "state": "succeeded", "cutoff": "infinity",
              "limit": S9D_BATCH}
    cpu, total = cpu_seconds(pid), 0
    while True:
        row = db.execute(statement, params).fetchone()
        deleted = int(row[0]) if row else 0
        total += deleted
        if deleted < S9D_BATCH:
            break
    return total, cpu_seconds(pid) - cpu


def _cascades(db: psycopg.Connection[Any]) -> None:
    for table in OWNED:
        db.execute(f"ALTER TABLE {table} ADD FOREIGN KEY (execution_id)"
                   " REFERENCES conductor_executions (id) ON DELETE CASCADE")


def s9_delete(run: Run) -> Result:
    """Delete 100,000 finished executions in batches of 1,000, each way."""
    figures: dict[str, float] = {}
    with run.stack("s9-delete") as stack:
        db = stack.db
        for way, statement in (("set_based", QUERIES["delete_expired"]),
                               ("cascade", CASCADING_DELETE)):
            if way == "cascade":
                _cascades(db)
            for own_rows in (False, True):
                _fill(db, S9D_ROWS, own_rows)
                n, cpu = _drain(db, statement)
                assert n == S9D_ROWS, n
                for table in OWNED:
                    left = db.execute(f"SELECT count(*) FROM {table}").fetchone()
                    assert left is not None and left[0] == 0, (table, left)
                label = "with_rows" if own_rows else "bare"
                figures[f"{way}_us_{label}"] = round(cpu / n * 1e6, 1)
    summary = (
        f"database CPU per deleted execution: set-based {figures['set_based_us_bare']} us"
        f" ({figures['set_based_us_with_rows']} us with 2 steps and an attempt), foreign-key"
        f" cascades {figures['cascade_us_bare']} us ({figures['cascade_us_with_rows']} us)")
    return Result("S9-delete", "retention delete cost", summary, figures)
