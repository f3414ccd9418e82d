"""The count behind the queue gauges and `conductor queues` (query queue_stats), and how often
the gauge loop runs it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from conductor_server.dispatch import QUEUE_GAUGE_INTERVAL, QUEUE_GAUGE_SHARE, gauge_pause
from conductor_server.sql import QUERIES

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _task(db, name: str) -> None:
    db.execute(
        "INSERT INTO conductor_tasks (name, max_attempts, initial_backoff, max_backoff,"
        " backoff_multiplier, backoff_jitter, registered_at) VALUES (%s, 3, 1, 60, 2, 0, %s)",
        (name, NOW))


def _execution(db, task: str, state: str, run_at: datetime) -> None:
    db.execute(
        "INSERT INTO conductor_executions (task, state, run_at, created_at, max_attempts,"
        " lease_expires_at) VALUES (%s, %s, %s, %s, 3, %s)",
        (task, state, run_at, NOW - timedelta(hours=1),
         NOW + timedelta(minutes=1) if state == "running" else None))


def _worker(db, worker_id: str, tasks: list[str], last_seen: datetime,
            disconnected: bool = False) -> None:
    db.execute(
        "INSERT INTO conductor_workers (worker_id, hostname, pid, tasks, coordinator,"
        " connected_at, last_seen, disconnected_at) VALUES (%s, 'h', 1, %s, 'c', %s, %s, %s)",
        (worker_id, tasks, last_seen, last_seen, last_seen if disconnected else None))


def test_counts_ready_waiting_and_running_per_task_with_the_oldest_ready_and_live_workers(db):
    for name in ("qa", "qb", "qc"):
        _task(db, name)
    oldest = NOW - timedelta(minutes=30)
    for run_at in (oldest, NOW - timedelta(minutes=1), NOW):
        _execution(db, "qa", "pending", run_at)
    for minutes in (1, 60):
        _execution(db, "qa", "pending", NOW + timedelta(minutes=minutes))
    _execution(db, "qa", "running", NOW - timedelta(minutes=2))
    for state in ("succeeded", "failed", "cancelled"):  # final: never counted
        _execution(db, "qa", state, NOW - timedelta(hours=2))
    for _ in range(2):
        _execution(db, "qb", "running", NOW)
    _worker(db, "live", ["qa", "qb"], NOW)
    _worker(db, "gone", ["qa"], NOW, disconnected=True)
    _worker(db, "silent", ["qa"], NOW - timedelta(minutes=5))

    rows = db.execute(QUERIES["queue_stats"],
                      {"now": NOW, "seen_after": NOW - timedelta(minutes=1)}).fetchall()

    assert rows == [
        ("qa", 3, 2, 1, oldest, 1),
        ("qb", 0, 0, 2, None, 1),
        ("qc", 0, 0, 0, None, 0),
    ]


@pytest.mark.parametrize(("took", "pause"), [
    (0.0, QUEUE_GAUGE_INTERVAL),
    (0.01, QUEUE_GAUGE_INTERVAL),
    (QUEUE_GAUGE_INTERVAL * QUEUE_GAUGE_SHARE, QUEUE_GAUGE_INTERVAL),
    (0.65, 0.65 / QUEUE_GAUGE_SHARE),
])
def test_a_count_that_takes_long_is_run_less_often(took, pause):
    assert gauge_pause(took) == pytest.approx(pause)
    assert took / (took + gauge_pause(took)) <= QUEUE_GAUGE_SHARE + 1e-9


def test_a_failed_count_is_tried_again_at_the_usual_interval():
    # a refresh that failed after waiting 5 s for a connection is no measure of its cost
    assert gauge_pause(None) == QUEUE_GAUGE_INTERVAL
