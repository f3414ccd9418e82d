"""InvokeBatch with a dedupe key per item (InvokeBatchRequest.dedupe_keys): one execution
per key that no unfinished execution holds, answers per item, retries and races."""

from __future__ import annotations

import threading
from typing import Any

import grpc
import psycopg
import pytest

from conductor.v1 import client_pb2, client_pb2_grpc
from conductor_worker import Client, InvalidArgument
from conductor_worker.operations import Invoked
from tests.conftest import wait_for
from tests.integration.raw_worker import RawWorker, definition


@pytest.fixture
def address(coordinator):
    address = coordinator.coordinator.address
    worker = RawWorker(address, definition("known"))
    yield address
    worker.close()


@pytest.fixture
def stub(address):
    with grpc.insecure_channel(address) as channel:
        yield client_pb2_grpc.ConductorServiceStub(channel)


def _rows(db: Any) -> list[tuple[str, str | None, Any]]:
    return [(str(r[0]), r[1], r[2]) for r in db.execute(
        "SELECT id, dedupe_key, payload FROM conductor_executions ORDER BY id")]


def test_each_item_is_deduplicated_by_its_own_key(address, db):
    with Client(address) as client:
        holder = client.invoke("known", "held", dedupe_key="c")
        got = client.invoke_batch_info(
            "known", ["a1", "none", "b1", "a2", "c1"], dedupe_keys=["a", None, "b", "a", "c"])
        ids = [i.execution_id for i in got]
        assert [i.created for i in got] == [True, True, True, False, False]
        assert ids[3] == ids[0], "a later item with the same key answers the first one's id"
        assert ids[4] == holder, "an unfinished execution holding the key answers"
        assert len(set(ids)) == 4
        assert _rows(db) == sorted([(holder, "c", "held"), (ids[0], "a", "a1"),
                                    (ids[1], None, "none"), (ids[2], "b", "b1")])
        # the plain form answers the ids only; a finished holder frees its key
        db.execute("UPDATE conductor_executions SET state = 'cancelled',"
                   " lease_expires_at = NULL WHERE id = %s", (int(holder),))
        again = client.invoke_batch("known", ["c2", "a3"], dedupe_keys=["c", "a"])
        assert again[1] == ids[0]
        assert again[0] not in (holder, *ids)
        assert client.get(again[0]).payload == "c2"
        # no keys at all: every item is created, as before
        plain = client.invoke_batch_info("known", [1, 2])
        assert [i.created for i in plain] == [True, True]


def test_a_retried_batch_answers_the_same_flags_and_creates_nothing(stub, db):
    request = client_pb2.InvokeBatchRequest(
        task="known", payloads_json=["1", "2", "3"], dedupe_keys=["x", "", "x"],
        request_id="keyed-batch")
    first = stub.InvokeBatch(request, timeout=10)
    assert list(first.created) == [True, True, False]
    assert first.execution_ids[0] == first.execution_ids[2]
    count = len(_rows(db))
    again = stub.InvokeBatch(request, timeout=10)
    assert list(again.execution_ids) == list(first.execution_ids)
    assert list(again.created) == [True, True, False]
    assert len(_rows(db)) == count == 2
    plain = stub.InvokeBatch(client_pb2.InvokeBatchRequest(task="known", payloads_json=["1"]),
                             timeout=10)
    assert len(plain.execution_ids) == 1 and list(plain.created) == [], "no keys: no flags"


def test_racing_batches_with_the_same_keys_create_one_execution_per_key(address, db):
    keys = [f"k{i:03}" for i in range(200)]
    answers: list[list[Invoked]] = []
    barrier = threading.Barrier(4)

    def invoke(n: int) -> None:
        with Client(address) as client:
            barrier.wait(10)
            order = keys[n:] + keys[:n]  # each batch gives the keys in another order
            answers.append(client.invoke_batch_info("known", order, dedupe_keys=order))

    threads = [threading.Thread(target=invoke, args=(n * 50,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == 4
    by_key = {r[1]: r[0] for r in _rows(db)}
    assert sorted(by_key) == keys and len(_rows(db)) == 200, "one execution per key"
    by_id = {v: k for k, v in by_key.items()}
    for answer in answers:
        assert len(answer) == 200
        assert {by_id[i.execution_id]: i.execution_id for i in answer} == by_key
    assert sum(i.created for answer in answers for i in answer) == 200, \
        "each key created once, by one of the batches"


def test_batches_holding_common_keys_wait_in_key_order_without_deadlock(address, database_url):
    """The test's own transaction holds key k1 uncommitted; a batch with keys [k2, k1]
    waits for it. If the batch had inserted k2 first, the test's insert of k2 would wait
    for the batch: a deadlock. In key order the batch waits before it takes k2."""
    answers: list[list[tuple[str, bool]]] = []
    with psycopg.connect(database_url) as conn:
        conn.execute(_INSERT, ("held-1", "k1"))
        batch = threading.Thread(target=lambda: answers.append(_batch(address, ["k2", "k1"])))
        batch.start()
        wait_for(lambda: conn.execute(  # the batch's statement waits for this transaction
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database()").fetchone()[0] == 1,
            what="the batch to wait for key k1")
        conn.execute(_INSERT, ("held-2", "k2"))  # would deadlock if the batch held k2
        held = [r[0] for r in conn.execute(
            "SELECT id::text FROM conductor_executions WHERE dedupe_key IN ('k2', 'k1')"
            " ORDER BY dedupe_key DESC")]
        conn.commit()
    batch.join(30)
    assert answers == [[(held[0], False), (held[1], False)]]


_INSERT = ("INSERT INTO conductor_executions (task, payload, run_at, created_at, max_attempts,"
           " dedupe_key) VALUES ('known', to_jsonb(%s::text), now() + interval '1 hour',"
           " now(), 3, %s)")


def _batch(address: str, keys: list[str]) -> list[tuple[str, bool]]:
    """One InvokeBatch call, not retried (a client's retry would hide a deadlock)."""
    with grpc.insecure_channel(address) as channel:
        answer = client_pb2_grpc.ConductorServiceStub(channel).InvokeBatch(
            client_pb2.InvokeBatchRequest(task="known", payloads_json=["1"] * len(keys),
                                          dedupe_keys=keys), timeout=30)
    return list(zip(answer.execution_ids, answer.created, strict=True))


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (client_pb2.InvokeBatchRequest(task="known", payloads_json=["1", "2"],
                                       dedupe_keys=["a"]), "dedupe_keys"),
        (client_pb2.InvokeBatchRequest(task="known", payloads_json=["1", "2"],
                                       dedupe_keys=["a", "b" * 501]), "dedupe_keys[1]"),
        (client_pb2.InvokeBatchRequest(task="known", payloads_json=["1"],
                                       dedupe_keys=["a\x00"]), "dedupe_keys[0]"),
        (client_pb2.InvokeBatchRequest(task="known", payloads_json=["1"], dedupe_keys=["a"],
                                       options=client_pb2.InvokeOptions(debounce_seconds=1)),
         "options.debounce_seconds"),
        (client_pb2.InvokeBatchRequest(task="known", payloads_json=["1"],
                                       options=client_pb2.InvokeOptions(dedupe_key="a")),
         "options.dedupe_key"),
    ],
)
def test_bad_dedupe_keys_name_the_field_and_write_nothing(stub, db, request_, field):
    with pytest.raises(grpc.RpcError) as info:
        stub.InvokeBatch(request_, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith(field + ":"), info.value.details()
    assert _rows(db) == []


def test_the_client_checks_the_number_of_keys_before_any_call(address, db):
    with Client(address) as client, pytest.raises(InvalidArgument,
                                                  match=r"^dedupe_keys: needs one per payload"):
        client.invoke_batch("known", [1, 2, 3], dedupe_keys=["a", "b"])
    assert _rows(db) == []
