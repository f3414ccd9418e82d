"""The statements that name executions by id reach them by primary key, whatever the table's
statistics say.

A queue drains, is vacuumed or analyzed while empty (statistics: no rows), and fills again
before the next analyze. Joined to a list of ids (an unnest or a CTE), such a table looked
like one row to the planner, so it scanned the whole table, or all running rows, for every
lease, completion, failure and release: 50 ms a statement at 100,000 rows. Each statement
now restricts the table by `id = ANY(...)` itself. These tests put the table in that state
and read the plans PostgreSQL runs (generic ones, as prepared statements use)."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conductor_server.sql import QUERIES

ROWS = 20_000
#: a statement about one execution may read a few rows of the table, never thousands
MOST_ROWS = 50

BY_ID = ["lease", "renew_leases", "save_steps", "complete", "fail", "release",
         "shift_deadlines", "mark_unstarted", "return_unstarted", "pause_buckets",
         "insert_log_lines", "redact_finished"]


def _fill(db: Any, running: bool) -> tuple[int, str]:
    """The table analyzed while empty (with pages left from earlier rows), then ROWS rows
    (running ones, or finished), then one pending and one running execution of task t."""
    db.execute("INSERT INTO conductor_tasks (name, max_attempts, initial_backoff, max_backoff,"
               " backoff_multiplier, backoff_jitter, registered_at)"
               " VALUES ('t', 3, 1, 60, 2, 0, now())")
    insert = ("INSERT INTO conductor_executions (task, payload, run_at, created_at, max_attempts,"
              " state, finished_at, lease_expires_at, lease_token, worker_id)"
              " SELECT 't', '1', now(), now(), 3, %s, %s, %s, gen_random_uuid(), 'other'"
              " FROM generate_series(1, %s)")
    done = ("'succeeded'", "now()", "NULL")
    db.execute(insert % (*done, ROWS))
    db.execute("SELECT conductor_delete_executions(array_agg(id)) FROM conductor_executions")
    db.execute("VACUUM (TRUNCATE false) conductor_executions")
    db.execute("ANALYZE conductor_executions")
    assert db.execute("SELECT reltuples FROM pg_class"
                      " WHERE relname = 'conductor_executions'").fetchone()[0] == 0
    db.execute(insert % (*(("'running'", "NULL", "now() + interval '1 h'") if running else done),
                         ROWS))
    db.execute("INSERT INTO conductor_executions (task, payload, run_at, created_at, max_attempts)"
               " VALUES ('t', '1', now() - interval '1 s', now(), 3)")
    token = str(uuid.uuid4())
    row = db.execute(
        "INSERT INTO conductor_executions (task, payload, run_at, created_at, max_attempts,"
        " state, lease_token, worker_id, lease_expires_at, attempt, runs, leased_at)"
        " VALUES ('t', '1', now(), now(), 3, 'running', %s, 'w', now() + interval '1 h', 1, 1,"
        " now()) RETURNING id", (token,)).fetchone()
    return row[0], token


def _params(query: str, execution_id: int, token: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "ids": [execution_id], "tokens": [token], "results": ["1"], "workers": ["w"],
        "now": now, "lease_now": now, "errors": ['{"type": "E", "message": "m"}'],
        "retryable": [True], "lost": [False], "run_ats": [now], "reasons": ["shutdown"],
        "names": ["s"], "started": [True], "untils": [now], "worker_id": "w",
        "expires_at": now + timedelta(seconds=30), "renewed_until": now + timedelta(hours=2),
        "grace": 0.0, "max_returns": 3, "attempts": [1], "levels": ["info"],
        "messages": ["x"], "most": 1000, "times": [now], "cutoff": now, "limit": 1,
        "since": now - timedelta(days=1), "state": "succeeded", "task": "t", "cap": 0,
        "task_timeout": None, "queues": None,
    }
    return {name: values[name] for name in set(re.findall(r"%\((\w+)\)s", query))}


def _rows_read(plan: dict[str, Any]) -> list[tuple[str, int]]:
    """(node, rows) of every plan node that reads conductor_executions."""
    found = []
    if plan.get("Relation Name") == "conductor_executions":
        found.append((f"{plan['Node Type']} {plan.get('Index Name', '')}",
                      int(plan["Actual Rows"] * plan["Actual Loops"]
                          + plan.get("Rows Removed by Filter", 0))))
    for child in plan.get("Plans", []):
        found += _rows_read(child)
    return found


@pytest.mark.parametrize("running", [False, True], ids=["finished", "running"])
def test_by_id_statements_do_not_scan_a_table_analyzed_empty(db, running):
    execution_id, token = _fill(db, running)
    db.execute("SET plan_cache_mode = force_generic_plan")
    wide = {}
    for name in BY_ID:
        query = QUERIES[name]
        with db.transaction(force_rollback=True):
            cur = db.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + query,
                             _params(query, execution_id, token), prepare=True)
            plan = cur.fetchone()[0]
        if isinstance(plan, str):
            plan = json.loads(plan)
        read = [(node, n) for node, n in _rows_read(plan[0]["Plan"]) if n > MOST_ROWS]
        if read:
            wide[name] = read
    assert wide == {}
