"""StopLeasing and drain mode: once a worker asks for no more leases (or is told it is
drained) the coordinator answers LeasingStopped after the last lease it sends, and a lease
query still running at that moment gives its leases back instead of sending them. A lease
sent to a worker that is going away would otherwise expire unread and count an attempt."""

from __future__ import annotations

from typing import Any

import psycopg

from conductor.v1 import worker_pb2
from conductor_worker import Client
from tests.conftest import wait_for
from tests.integration.raw_worker import RawWorker, definition

STOP = worker_pb2.WorkerMessage(stop_leasing=worker_pb2.StopLeasing())


def row(db: Any, execution_id: str) -> tuple[str, int, str | None]:
    state, attempt, worker = db.execute(
        "SELECT state::text, attempt, worker_id FROM conductor_executions WHERE id = %s",
        (int(execution_id),),
    ).fetchone()
    return state, attempt, worker


def kinds_before(worker: RawWorker, kind: str) -> list[str]:
    """The kinds of the messages the worker received up to the first `kind` (included)."""
    seen = []
    while True:
        message = worker.received.get(timeout=30)
        assert not isinstance(message, Exception), message
        seen.append(message.WhichOneof("kind") or "")
        if seen[-1] == kind:
            return seen


def test_stop_leasing_is_answered_and_no_lease_follows(coordinator, db):
    address = coordinator.coordinator.address
    stopping = RawWorker(address, definition("stop-t"), worker_id="stopping")
    stopping.send(STOP)
    assert "leases" not in kinds_before(stopping, "leasing_stopped")
    with Client(address) as client:
        execution_id = client.invoke("stop-t", None)
        other = RawWorker(address, definition("stop-t"), worker_id="other")
        lease = other.next("leases").leases.items[0]
        assert lease.execution_id == execution_id and lease.attempt == 1
    assert row(db, execution_id) == ("running", 1, "other")
    # nothing reached the stopping worker: its stream carries heartbeat answers only
    stopping.send(worker_pb2.WorkerMessage(heartbeat=worker_pb2.Heartbeat()))
    assert "leases" not in kinds_before(stopping, "heartbeat_ack")
    stopping.close()
    other.close()


def test_a_drained_worker_gets_no_more_leases(coordinator, db):
    address = coordinator.coordinator.address
    drained = RawWorker(address, definition("drain-t"), worker_id="drained", drain=True)
    drained.next("drained")
    with Client(address) as client:
        execution_id = client.invoke("drain-t", None)
        other = RawWorker(address, definition("drain-t"), worker_id="other")
        assert other.next("leases").leases.items[0].execution_id == execution_id
    drained.send(STOP)
    assert "leases" not in kinds_before(drained, "leasing_stopped")
    assert row(db, execution_id) == ("running", 1, "other")
    drained.close()
    other.close()


def test_a_lease_query_running_at_stop_gives_its_leases_back(coordinator, db, database_url):
    """The lease statement is held up by a table lock while the worker stops: once it
    finishes, its lease is given back without an attempt, and LeasingStopped came first."""
    address = coordinator.coordinator.address
    RawWorker(address, definition("held-up"), worker_id="registers").close()
    with Client(address) as client:
        execution_id = client.invoke("held-up", None)
    with psycopg.connect(database_url) as blocker:
        blocker.execute("LOCK TABLE conductor_executions IN EXCLUSIVE MODE")
        stopping = RawWorker(address, definition("held-up"), worker_id="stopping")
        wait_for(lambda: _lease_waits_for_lock(db), timeout=30, what="the lease query to block")
        stopping.send(STOP)
        assert "leases" not in kinds_before(stopping, "leasing_stopped")
        blocker.rollback()  # the lease statement goes on, after the answer
    wait_for(lambda: _given_back(db, execution_id), timeout=30,
             what="the lease to be given back")
    assert row(db, execution_id)[1] == 0, "a lease never sent counts no attempt"
    other = RawWorker(address, definition("held-up"), worker_id="other")
    assert other.next("leases").leases.items[0].attempt == 1
    stopping.send(worker_pb2.WorkerMessage(heartbeat=worker_pb2.Heartbeat()))
    assert "leases" not in kinds_before(stopping, "heartbeat_ack")
    stopping.close()
    other.close()


def _given_back(db: Any, execution_id: str) -> bool:
    """Leased once (runs counts leases) and pending again."""
    state, runs = db.execute(
        "SELECT state::text, runs FROM conductor_executions WHERE id = %s", (int(execution_id),)
    ).fetchone()
    return bool(state == "pending" and runs == 1)


def _lease_waits_for_lock(db: Any) -> bool:
    found = db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        " AND query LIKE %s", ("%lease_token = gen_random_uuid()%",)
    ).fetchone()[0]
    return bool(found)

