"""Cross-coordinator wake-ups: a waiter on one coordinator learns of a completion on another."""

from __future__ import annotations

import threading

import psycopg

from conductor_worker import Client
from tests.integration.raw_worker import RawWorker, definition


def test_wait_on_one_coordinator_wakes_on_completion_at_another(start_coordinator):
    first, second = start_coordinator(), start_coordinator()
    worker = RawWorker(first.coordinator.address, definition("elsewhere"))
    with Client(first.coordinator.address) as a, Client(second.coordinator.address) as b:
        execution_id = a.invoke("elsewhere", 1)
        lease = worker.next("leases").leases.items[0]
        waited: list[object] = []
        waiter = threading.Thread(target=lambda: waited.append(b.wait(execution_id, 30)))
        waiter.start()
        worker.complete(execution_id, lease.lease_token, '"done"')
        waiter.join(30)
    assert waited and waited[0].result == "done"  # type: ignore[attr-defined]
    worker.close()


def test_too_many_ids_for_one_notification_send_a_star(database_url):
    with psycopg.connect(database_url, autocommit=True) as listener, \
            psycopg.connect(database_url, autocommit=True) as sender:
        listener.execute("LISTEN conductor_finished")
        named = sender.execute("SELECT conductor_notify_finished(ARRAY[1, 22, 333])").fetchone()
        many = sender.execute(
            "SELECT conductor_notify_finished(array_agg(g)) FROM generate_series(1, 5000) g"
        ).fetchone()
        none = sender.execute("SELECT conductor_notify_finished(ARRAY[]::bigint[])").fetchone()
        payloads = [n.payload for n in listener.notifies(timeout=5, stop_after=2)]
    assert (named, many, none) == ((3,), (5000,), (0,))
    assert payloads == ["1,22,333", "*"]
