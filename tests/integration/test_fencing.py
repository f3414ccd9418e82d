"""Leases and fencing over the real worker stream, with the coordinator's clock moved."""

from __future__ import annotations

from conductor.v1 import worker_pb2
from conductor_worker import Client
from tests.conftest import wait_for
from tests.integration.raw_worker import RawWorker, definition


def _state(db, execution_id: str) -> tuple:
    return db.execute(
        "SELECT state::text, attempt, lease_token::text, result::text, error->>'type'"
        " FROM conductor_executions WHERE id = %s", (int(execution_id),)
    ).fetchone()


def test_stale_token_writes_are_rejected_and_change_nothing(start_coordinator, db):
    coordinator = start_coordinator(lease_timeout=1.0)
    address = coordinator.coordinator.address
    old = RawWorker(address, definition("fenced", capacity=1), worker_id="old")
    with Client(address) as client:
        execution_id = client.invoke("fenced", {"n": 1})
    first = old.next("leases").leases.items[0]
    assert (first.execution_id, first.attempt) == (execution_id, 1)
    assert old.save_step(execution_id, first.lease_token, "a", '"from-old"').status == (
        worker_pb2.WRITE_STATUS_OK)

    # The old worker goes quiet; its lease expires (in real time: the lease timeout is 1 s)
    # and the reaper counts an attempt.
    old.close()
    wait_for(lambda: _state(db, execution_id)[0] == "pending", what="the lease to be reaped")
    assert _state(db, execution_id)[4] == "WorkerLost"

    new = RawWorker(address, definition("fenced", capacity=1), worker_id="new")
    second = new.next("leases").leases.items[0]
    assert second.attempt == 2 and second.lease_token != first.lease_token
    assert dict(second.steps) == {"a": '"from-old"'}
    before = _state(db, execution_id)
    steps_before = db.execute("SELECT name, result::text FROM conductor_steps").fetchall()

    # Writes with the first token, on a stream of their own, are refused.
    stale = RawWorker(address, definition("fenced", capacity=1), worker_id="stale")
    ack = stale.save_step(execution_id, first.lease_token, "b", '"stale"')
    assert ack.status == worker_pb2.WRITE_STATUS_STALE_LEASE
    done = stale.complete(execution_id, first.lease_token, '"stale result"')
    assert done.status == worker_pb2.WRITE_STATUS_STALE_LEASE
    assert _state(db, execution_id) == before
    assert db.execute("SELECT name, result::text FROM conductor_steps").fetchall() == steps_before

    # The current holder's writes go through.
    assert new.save_step(execution_id, second.lease_token, "b", '"new"').status == (
        worker_pb2.WRITE_STATUS_OK)
    assert new.complete(execution_id, second.lease_token, '"fine"').status == (
        worker_pb2.WRITE_STATUS_OK)
    state, attempt, _, result, _ = _state(db, execution_id)
    assert (state, attempt, result) == ("succeeded", 2, '"fine"')
    # A resent completion (after a lost ack) is acknowledged again without change.
    assert new.complete(execution_id, second.lease_token, '"fine"').status == (
        worker_pb2.WRITE_STATUS_OK)
    for worker in (new, stale):
        worker.close()


def test_malformed_token_is_stale(coordinator, db):
    address = coordinator.coordinator.address
    worker = RawWorker(address, definition("fenced2"))
    with Client(address) as client:
        execution_id = client.invoke("fenced2")
    worker.next("leases")
    ack = worker.save_step(execution_id, "not-a-uuid", "x", "1")
    assert ack.status == worker_pb2.WRITE_STATUS_STALE_LEASE
    assert db.execute("SELECT count(*) FROM conductor_steps").fetchone()[0] == 0
    worker.close()


def test_reconnecting_worker_keeps_its_leases(coordinator, db):
    address = coordinator.coordinator.address
    first = RawWorker(address, definition("held"), worker_id="w")
    with Client(address) as client:
        execution_id = client.invoke("held")
        lease = first.next("leases").leases.items[0]
        first.close()
        again = RawWorker(address, definition("held"), worker_id="w", held=[
            worker_pb2.LeaseRef(execution_id=execution_id, lease_token=lease.lease_token)])
        assert list(again.registered.lost_leases) == []
        assert again.complete(execution_id, lease.lease_token, "7").status == (
            worker_pb2.WRITE_STATUS_OK)
        assert client.get(execution_id).result == 7
        assert client.get(execution_id).attempt == 1
        again.close()


def test_little_room_is_still_filled(coordinator):
    """Leases go out in batches under load, but the last bit of room is filled too."""
    address = coordinator.coordinator.address
    worker = RawWorker(address, definition("roomy", capacity=20))
    with Client(address) as client:
        client.invoke_batch("roomy", list(range(16)))
        got = 0
        while got < 16:
            got += len(worker.next("leases").leases.items)
        client.invoke_batch("roomy", list(range(4)))  # 4 free of 20: below a quarter
        while got < 20:
            got += len(worker.next("leases", timeout=5).leases.items)
    assert got == 20
    worker.close()


def test_first_save_of_a_name_wins_within_a_batch_and_after_it(coordinator, db):
    """One message with a name saved twice, a stale write and a fresh name: each is answered
    by position; the recorded result is the first write's (as stored JSON), also later."""
    address = coordinator.coordinator.address
    worker = RawWorker(address, definition("first-wins"))
    with Client(address) as client:
        execution_id = client.invoke("first-wins")
    token = worker.next("leases").leases.items[0].lease_token
    stale = "00000000-0000-4000-8000-000000000000"

    def item(name: str, result: str, lease_token: str = token) -> worker_pb2.StepSave:
        return worker_pb2.StepSave(execution_id=execution_id, lease_token=lease_token,
                                   name=name, result_json=result)

    worker.send(worker_pb2.WorkerMessage(step_saves=worker_pb2.StepSaves(items=[
        item("a", '{"y": 1,  "x": 2}'), item("a", '"second"'), item("c", "1", stale),
        item("b", "[1, 2]"),
    ])))
    acks: list[worker_pb2.StepAck] = []
    while len(acks) < 4:
        acks.extend(worker.next("step_acks").step_acks.items)
    by = {(a.name, a.result_json, a.status) for a in acks}
    assert by == {
        ("a", '{"x": 2, "y": 1}', worker_pb2.WRITE_STATUS_OK),  # both saves of "a"
        ("c", "", worker_pb2.WRITE_STATUS_STALE_LEASE),
        ("b", "[1, 2]", worker_pb2.WRITE_STATUS_OK),
    }
    assert sum(1 for a in acks if a.name == "a") == 2
    assert all(a.execution_id == execution_id for a in acks)
    later = worker.save_step(execution_id, token, "a", '"third"')
    assert (later.status, later.result_json) == (worker_pb2.WRITE_STATUS_OK, '{"x": 2, "y": 1}')
    rows = db.execute("SELECT name, result::text FROM conductor_steps WHERE execution_id = %s"
                      " ORDER BY name", (int(execution_id),)).fetchall()
    assert rows == [("a", '{"x": 2, "y": 1}'), ("b", "[1, 2]")]
    worker.close()
