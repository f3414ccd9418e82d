"""Retention and redaction under the test clock: finished executions go after their task's
retention with their steps and attempts, pending and running ones never; redaction drops the
data and keeps the metadata; one coordinator at a time runs the maintenance."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from conductor_worker import Client, ExecutionNotFound
from tests.conftest import wait_for

pytestmark = pytest.mark.acceptance
TASKS = "tests.acceptance.history_tasks"
MINUTE = timedelta(minutes=1)


def _rows(db: Any, table: str, execution_id: str) -> int:
    query = f"SELECT count(*) FROM {table} WHERE execution_id = %s"
    return int(db.execute(query, (int(execution_id),)).fetchone()[0])


def _pass(node: Any) -> None:
    """One whole maintenance pass after now (the loop's own, woken by a clock jump, may hold
    the lock for a moment: then try again)."""
    maintenance = node.coordinator.maintenance
    wait_for(lambda: node.run(maintenance.run_once()), what="a maintenance pass")


def test_retention_deletes_finished_runs_with_their_rows_and_redaction_keeps_metadata(
    start_coordinator, spawn_worker, clock, db, tmp_path
):
    node = start_coordinator(retention_cancelled=90 * 60, maintenance_interval=3600)
    address = node.coordinator.address
    spawn_worker(address, TASKS)
    with Client(address) as client:
        ok = client.wait(client.invoke("history-noop", {"card": "4111"}), timeout=60)
        bad = client.wait(client.invoke("history-noop", {"fail": "hunter2"}), timeout=60)
        gone = client.cancel(client.invoke("history-noop", 1, delay=86400 * 30))
        waiting = client.invoke("history-noop", 2, delay=86400 * 30)
        ready = tmp_path / "ready"
        running = client.invoke("history-hang", {"ready": str(ready)})
        wait_for(ready.exists, timeout=60, what="the hanging task to start")
        assert (ok.state, bad.state, gone.state) == ("succeeded", "failed", "cancelled")
        assert _rows(db, "conductor_steps", ok.id) == 1
        assert [a.outcome for a in client.attempts(ok.id)] == ["succeeded"]
        assert _rows(db, "conductor_attempts", bad.id) == 1

        clock.advance(31 * MINUTE)  # past redact_after (30m): data goes, metadata stays
        _pass(node)
        redacted = client.get(ok.id)
        assert redacted.redacted_at is not None
        assert (redacted.payload, redacted.result) == (None, None)
        assert [s.result for s in client.steps(ok.id)] == [None]
        assert (redacted.task, redacted.state, redacted.attempt) == ("history-noop",
                                                                      "succeeded", 1)
        assert (redacted.created_at, redacted.finished_at) == (ok.created_at, ok.finished_at)
        failed = client.get(bad.id)
        assert failed.error is not None and failed.error.type == "RuntimeError"
        assert failed.error.message == "" and failed.error.traceback == ""
        assert failed.attempts[0].error is not None
        assert failed.attempts[0].error.type == "RuntimeError"
        assert "hunter2" not in repr(failed)
        assert client.get(gone.id).redacted_at is not None

        clock.advance(30 * MINUTE)  # 61m: past the succeeded retention (1h)
        _pass(node)
        with pytest.raises(ExecutionNotFound):
            client.get(ok.id)
        assert _rows(db, "conductor_steps", ok.id) == 0
        assert _rows(db, "conductor_attempts", ok.id) == 0
        assert client.get(bad.id).state == "failed"
        assert client.get(gone.id).state == "cancelled"

        clock.advance(60 * MINUTE)  # 121m: past failed (2h) and cancelled (90m, the default)
        _pass(node)
        for execution_id in (bad.id, gone.id):
            with pytest.raises(ExecutionNotFound):
                client.get(execution_id)
            assert _rows(db, "conductor_attempts", execution_id) == 0
        assert client.get(waiting).state == "pending"
        assert client.get(running).state == "running"
        with pytest.raises(ExecutionNotFound):
            client.rerun(ok.id)
    metrics = node.coordinator.metrics
    assert metrics.maintenance_deleted.labels("succeeded")._value.get() == 1
    assert metrics.maintenance_deleted.labels("failed")._value.get() == 1
    assert metrics.maintenance_redacted.labels("succeeded")._value.get() == 1


def test_zero_retention_deletes_at_the_loops_next_pass(start_coordinator, spawn_worker, clock):
    node = start_coordinator(retention_succeeded=0, maintenance_interval=0.2)
    address = node.coordinator.address
    spawn_worker(address)  # tests.acceptance.tasks: no retention of its own
    with Client(address) as client:
        done = client.wait(client.invoke("noop", 1), timeout=60)
        clock.advance(timedelta(seconds=1))  # finished before now, whatever the clock's grain

        def deleted() -> bool:
            try:
                client.get(done.id)
            except ExecutionNotFound:
                return True
            return False

        wait_for(deleted, timeout=60, what="retention 0 to delete the execution")


def test_two_coordinators_run_the_maintenance_one_at_a_time(start_coordinator, spawn_worker,
                                                            clock, db):
    first = start_coordinator(maintenance_interval=3600)
    second = start_coordinator(maintenance_interval=3600)
    worker = spawn_worker(first.coordinator.address, TASKS)
    with Client(second.coordinator.address) as client:
        ids = [client.wait(client.invoke("history-noop", i), timeout=60).id for i in range(3)]
    worker.stop()
    db.execute("INSERT INTO conductor_workers (worker_id, hostname, pid, tasks, coordinator,"
               " connected_at, last_seen, disconnected_at) VALUES ('departed', 'h', 1, '{}',"
               " 'c', now() - interval '8 days', now() - interval '8 days', now())")
    db.execute("SELECT pg_advisory_lock(hashtext('conductor_maintenance'))")  # held elsewhere
    clock.advance(2 * 60 * MINUTE)  # wakes both loops: they find the lock taken
    for node in (first, second):
        assert node.run(node.coordinator.maintenance.run_once()) is False
    assert db.execute("SELECT count(*) FROM conductor_executions").fetchone()[0] == 3
    db.execute("SELECT pg_advisory_unlock(hashtext('conductor_maintenance'))")
    _pass(first)
    _pass(second)  # nothing left for it
    assert db.execute("SELECT count(*) FROM conductor_executions").fetchone()[0] == 0
    workers = [r[0] for r in db.execute("SELECT worker_id FROM conductor_workers")]
    assert "departed" not in workers and len(workers) == 1  # the one seen just now stays
    deleted = sum(
        node.coordinator.metrics.maintenance_deleted.labels("succeeded")._value.get()
        for node in (first, second)
    )
    assert deleted == len(ids)
    for node in (first, second):
        skipped = node.coordinator.metrics.maintenance_passes.labels("skipped")._value.get()
        assert skipped >= 1


def test_events_are_deleted_after_their_retention_and_their_dedupe_keys_with_them(
    start_coordinator, spawn_worker, clock, db
):
    node = start_coordinator(retention_events=3600)
    address = node.coordinator.address
    with Client(address) as client:
        client.emit("retention.event", {"n": 1}, dedupe_key="once")
        client.emit("retention.event", {"n": 2}, dedupe_key="once")  # the key is taken
        assert db.execute("SELECT count(*) FROM conductor_events").fetchone()[0] == 1
        clock.advance(timedelta(minutes=30))
        client.emit("retention.event", {"n": 3})
        clock.advance(timedelta(minutes=31))  # the first is 61 minutes old, the other 31
        _pass(node)
        kept = db.execute("SELECT payload->>'n' FROM conductor_events ORDER BY id").fetchall()
        assert [r[0] for r in kept] == ["3"]
        client.emit("retention.event", {"n": 4}, dedupe_key="once")  # its key is free again
    kept = db.execute("SELECT payload->>'n' FROM conductor_events ORDER BY id").fetchall()
    assert [r[0] for r in kept] == ["3", "4"]
    assert node.coordinator.metrics.maintenance_events_deleted._value.get() == 1
