"""Leasing goes on while ready work and room are left: a pass leases at most
`lease_batch_size` per worker, and a worker with a larger window gets the rest in the passes
that follow at once, not at the next heartbeat or safety sweep (S6 held 1,794 of its 2,000
leases for over a minute when a pass that used up its share said "nothing more")."""

from __future__ import annotations

import time
from typing import Any

from conductor_worker import Client
from tests.integration.raw_worker import RawWorker, definition


def _states(db: Any, task: str) -> dict[str, int]:
    rows = db.execute("SELECT state::text, count(*) FROM conductor_executions WHERE task = %s"
                      " GROUP BY 1", (task,)).fetchall()
    return {state: int(count) for state, count in rows}


def _wait_running(db: Any, task: str, count: int, seconds: float) -> dict[str, int]:
    deadline = time.monotonic() + seconds
    while (states := _states(db, task)).get("running", 0) < count:
        assert time.monotonic() < deadline, f"only {states} after {seconds} s"
        time.sleep(0.02)
    return states


def test_a_window_larger_than_a_lease_batch_fills_at_once(start_coordinator, db):
    coordinator = start_coordinator(lease_batch_size=4)
    # no heartbeats: nothing but the leasing itself may bring the next batch
    worker = RawWorker(coordinator.coordinator.address, definition("wide", capacity=25),
                       heartbeat=False)
    with Client(coordinator.coordinator.address) as client:
        client.invoke_batch("wide", [None] * 40)
    # 25 in 7 passes of at most 4; the safety sweep would come only after 10 s
    states = _wait_running(db, "wide", 25, 3.0)
    assert states == {"running": 25, "pending": 15}, "exactly the window, no more"
    worker.close()


def test_a_capped_task_stops_at_its_cap(start_coordinator, db):
    coordinator = start_coordinator(lease_batch_size=4)
    worker = RawWorker(coordinator.coordinator.address,
                       definition("wide-capped", capacity=25, concurrency=6), heartbeat=False)
    with Client(coordinator.coordinator.address) as client:
        client.invoke_batch("wide-capped", [None] * 40)
    _wait_running(db, "wide-capped", 6, 3.0)
    coordinator.run(coordinator.coordinator.dispatcher.settle())
    assert _states(db, "wide-capped") == {"running": 6, "pending": 34}
    worker.close()
