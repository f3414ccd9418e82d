"""Stream liveness, unclaimed leases and wake-ups, over the real worker stream."""

from __future__ import annotations

import time

import grpc
import pytest

from conductor.v1 import worker_pb2
from conductor_worker import Client
from tests.integration.raw_worker import RawWorker, definition


def _state(db, execution_id: str) -> tuple:
    return db.execute(
        "SELECT state::text, attempt, error->>'type' FROM conductor_executions WHERE id = %s",
        (int(execution_id),),
    ).fetchone()


def test_heartbeats_are_answered_and_name_the_leases_that_are_gone(start_coordinator):
    coordinator = start_coordinator()
    worker = RawWorker(coordinator.coordinator.address, definition("beats"), heartbeat=False)
    gone = worker_pb2.LeaseRef(
        execution_id="12345", lease_token="00000000-0000-4000-8000-000000000000"
    )
    worker.send(worker_pb2.WorkerMessage(heartbeat=worker_pb2.Heartbeat(leases=[gone])))
    ack = worker.next("heartbeat_ack").heartbeat_ack
    assert list(ack.lost_leases) == [gone]
    assert ack.HasField("coordinator_time")
    worker.close()


def test_a_silent_worker_gets_no_more_leases_and_its_stream_is_closed(start_coordinator, db):
    coordinator = start_coordinator(lease_timeout=1.5)  # heartbeat interval 0.5 s
    address = coordinator.coordinator.address
    silent = RawWorker(address, definition("quiet"), worker_id="silent", heartbeat=False)
    started = time.monotonic()
    # It never heartbeats: within two intervals (1 s) the coordinator gives the stream up.
    with pytest.raises((grpc.RpcError, EOFError)):
        silent.next("never-sent", timeout=10)
    assert time.monotonic() - started < 3.0
    with Client(address) as client:
        execution_id = client.invoke("quiet", {})
    time.sleep(0.3)  # a lease pushed now would go to the closed stream
    assert _state(db, execution_id)[:2] == ("pending", 0)
    live = RawWorker(address, definition("quiet"), worker_id="live")
    assert live.next("leases").leases.items[0].execution_id == execution_id
    live.close()


def test_leases_pushed_into_a_dead_stream_are_given_back_without_an_attempt(
    start_coordinator, db
):
    coordinator = start_coordinator()
    address = coordinator.coordinator.address
    first = RawWorker(address, definition("lost-in-transit", capacity=3), worker_id="w1")
    with Client(address) as client:
        ids = client.invoke_batch("lost-in-transit", [{"n": i} for i in range(3)])
    leases = []
    while len(leases) < 3:
        leases.extend(first.next("leases").leases.items)
    kept = leases[0]
    # The same worker comes back on a new stream holding only one of them (the others were
    # in flight on the stream that died): they go back to pending, no attempt counted, and
    # the old stream is closed.
    second = RawWorker(address, definition("lost-in-transit", capacity=1), worker_id="w1",
                       held=[worker_pb2.LeaseRef(execution_id=kept.execution_id,
                                                 lease_token=kept.lease_token)])
    with pytest.raises((grpc.RpcError, EOFError)):
        first.next("never-sent", timeout=10)
    assert list(second.registered.lost_leases) == []
    states = {i: _state(db, i) for i in ids}
    assert states[kept.execution_id] == ("running", 1, None)
    others = [i for i in ids if i != kept.execution_id]
    assert [states[i] for i in others] == [("pending", 0, None)] * 2, states
    assert second.complete(kept.execution_id, kept.lease_token, "1").status == (
        worker_pb2.WRITE_STATUS_OK)
    second.close()


def test_every_delayed_execution_starts_on_time(start_coordinator):
    """Each future wake-up is kept (not only the earliest per task), so delayed work and
    retries start at their time, not at the next safety sweep (10 s)."""
    coordinator = start_coordinator()
    address = coordinator.coordinator.address
    worker = RawWorker(address, definition("later", capacity=10))
    delays = [0.3, 0.6, 0.9, 1.2]
    with Client(address) as client:
        for delay in delays:
            client.invoke("later", {"delay": delay}, delay=delay)
    invoked = time.monotonic()
    late = []
    for delay in delays:
        lease = worker.next("leases", timeout=5).leases.items[0]
        late.append(time.monotonic() - invoked - delay)
        assert worker.complete(lease.execution_id, lease.lease_token, "0").status == (
            worker_pb2.WRITE_STATUS_OK)
    assert max(late) < 0.25, f"started late by {late}"
    # A retry with a backoff starts on time too.
    with Client(address) as client:
        execution_id = client.invoke("later", {"retry": True})
    lease = worker.next("leases").leases.items[0]
    failed_at = time.monotonic()
    worker.send(worker_pb2.WorkerMessage(outcomes=worker_pb2.Outcomes(items=[
        worker_pb2.Outcome(execution_id=execution_id, lease_token=lease.lease_token,
                           failed=worker_pb2.Failed(retryable=True))])))
    retry = worker.next("leases", timeout=5).leases.items[0]
    assert retry.execution_id == execution_id and retry.attempt == 2
    assert time.monotonic() - failed_at < 0.5  # backoff 0.01-0.02 s in definition()
    worker.close()


def test_leases_go_in_messages_of_bounded_size(start_coordinator, monkeypatch):
    from conductor_server import worker_service

    monkeypatch.setattr(worker_service, "LEASE_MESSAGE_BUDGET", 5000)
    coordinator = start_coordinator()
    worker = RawWorker(coordinator.coordinator.address, definition("big-payloads", capacity=20))
    with Client(coordinator.coordinator.address) as client:
        ids = client.invoke_batch("big-payloads", [{"blob": "x" * 2000}] * 10)
    sizes = []
    while sum(sizes) < 10:
        sizes.append(len(worker.next("leases").leases.items))
    assert max(sizes) <= 2 and len(sizes) >= 5, sizes  # ~2.3 KB each, 5 KB per message
    worker.close()
    assert len(ids) == 10


def test_an_execution_too_large_to_lease_fails_alone(start_coordinator, db, monkeypatch):
    """Its payload and steps would make a message no worker can receive: it fails for good
    (LeaseTooLarge) instead of breaking the stream, and the others are leased as usual."""
    from conductor_server import dispatch

    monkeypatch.setattr(dispatch, "MAX_LEASE_BYTES", 10_000)
    coordinator = start_coordinator()
    address = coordinator.coordinator.address
    worker = RawWorker(address, definition("sized", capacity=5))
    with Client(address) as client:
        big = client.invoke("sized", {"n": 1}, delay=3600)
        small = client.invoke("sized", {"n": 2}, delay=3600)
    db.execute("INSERT INTO conductor_steps (execution_id, name, result, created_at)"
               " VALUES (%s, 's', to_jsonb(repeat('x', 20000)), now())", (int(big),))
    db.execute("UPDATE conductor_executions SET run_at = now() - interval '1 second'")
    coordinator.run(coordinator.coordinator.dispatcher.settle())  # they are ready now
    lease = worker.next("leases").leases.items[0]
    assert lease.execution_id == small
    assert _state(db, big) == ("failed", 1, "LeaseTooLarge")
    assert worker.complete(small, lease.lease_token, "2").status == worker_pb2.WRITE_STATUS_OK
    worker.close()
