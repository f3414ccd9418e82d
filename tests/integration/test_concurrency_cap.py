"""`concurrency`: a global cap on running executions of a task, across workers and
coordinators (leasing a capped task is serialised by an advisory lock; the count and the
lease are one statement after it)."""

from __future__ import annotations

from typing import Any

from conductor.v1 import worker_pb2
from conductor_worker import Client
from tests.integration.raw_worker import RawWorker, definition


def running(db: Any, task: str) -> list[tuple[int, str, str]]:
    rows = db.execute(
        "SELECT id, worker_id, lease_token::text FROM conductor_executions"
        " WHERE task = %s AND state = 'running' ORDER BY id", (task,)
    ).fetchall()
    return [(int(r[0]), r[1], r[2]) for r in rows]


def succeeded(db: Any, task: str) -> int:
    row = db.execute("SELECT count(*) FROM conductor_executions WHERE task = %s"
                     " AND state = 'succeeded'", (task,)).fetchone()
    return int(row[0])


def settle(*coordinators: Any) -> None:
    for coordinator in coordinators:
        coordinator.run(coordinator.coordinator.dispatcher.settle())


def test_cap_holds_across_workers_and_frees_a_slot_per_completion(coordinator, db):
    address = coordinator.coordinator.address
    capped = definition("capped", capacity=5, concurrency=2)
    workers = {f"w{i}": RawWorker(address, capped, worker_id=f"w{i}") for i in range(2)}
    with Client(address) as client:
        client.invoke_batch("capped", [None] * 6)
    settle(coordinator)
    held = running(db, "capped")
    assert len(held) == 2, "two workers with room for 10, but the cap is 2"
    execution_id, worker_id, token = held[0]
    ack = workers[worker_id].complete(str(execution_id), token, "1")
    assert ack.status == worker_pb2.WRITE_STATUS_OK
    settle(coordinator)
    assert len(running(db, "capped")) == 2, "the freed slot is taken, no more"
    assert succeeded(db, "capped") == 1
    for worker in workers.values():
        worker.close()


def test_cap_holds_with_two_coordinators_leasing_at_once(start_coordinator, db):
    first, second = start_coordinator(), start_coordinator()
    # "a" has room for 2 only, so the third slot must come from the other coordinator
    workers = {
        "a": RawWorker(first.coordinator.address,
                       definition("shared-cap", capacity=2, concurrency=3), worker_id="a"),
        "b": RawWorker(second.coordinator.address,
                       definition("shared-cap", capacity=10, concurrency=3), worker_id="b"),
    }
    with Client(first.coordinator.address) as client:
        client.invoke_batch("shared-cap", [None] * 30)
    seen = set()
    while succeeded(db, "shared-cap") < 30:
        settle(first, second)
        held = running(db, "shared-cap")
        assert len(held) <= 3, f"cap exceeded: {held}"
        assert held, "nothing running while executions are left"
        seen.update(w for _, w, _ in held)
        for execution_id, worker_id, token in held:  # both coordinators lease again at once
            workers[worker_id].complete(str(execution_id), token, "1")
    assert seen == {"a", "b"}, "both coordinators leased"
    for worker in workers.values():
        worker.close()
