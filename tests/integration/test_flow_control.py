"""Flow control driven by hand-made worker streams and the coordinator's clock: each
explain reason, debounce and throttle, shared rate limits, keys from the payload or the
invoke, and bad input (docs/flow-control.md)."""

from __future__ import annotations

import queue
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest

from conductor.v1 import client_pb2, client_pb2_grpc, worker_pb2
from conductor_worker import Client
from tests.integration.raw_worker import RawWorker, definition

START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
frozen = pytest.mark.parametrize("frozen_clock", [True], indirect=True)


def settle(*coordinators: Any) -> None:
    for coordinator in coordinators:
        coordinator.run(coordinator.coordinator.dispatcher.settle())


def leases(worker: RawWorker, timeout: float = 0.5) -> list[worker_pb2.Lease]:
    """Every lease pushed to the worker until none comes for `timeout` seconds."""
    got: list[worker_pb2.Lease] = []
    while True:
        try:
            got += worker.next("leases", timeout=timeout).leases.items
        except queue.Empty:
            return got


def running(db: Any, task: str) -> list[str]:
    return [str(r[0]) for r in db.execute(
        "SELECT id FROM conductor_executions WHERE task = %s AND state = 'running'"
        " ORDER BY id", (task,))]


@frozen
def test_each_explain_reason(coordinator, clock, db):
    clock.set(START)
    address = coordinator.coordinator.address
    worker = RawWorker(address,
                       definition("plain", capacity=1),
                       definition("capped", capacity=5, concurrency=1),
                       definition("keyed", capacity=5, key="k", key_concurrency=1),
                       definition("rated", capacity=5, rate_limit="1/h"),
                       definition("windowed", capacity=5, window=worker_pb2.Window(
                           start="20:00", end="21:00")),
                       definition("routed", capacity=5, queue="special"),
                       worker_id="explained")
    with Client(address) as client:
        why = lambda eid: client.get(eid).explanation  # noqa: E731
        later = client.invoke("plain", 1, delay=3600)
        first, ready = client.invoke("plain", 1), client.invoke("plain", 2)
        capped = [client.invoke("capped", n) for n in range(2)]
        keyed = [client.invoke("keyed", {"k": "a"}) for _ in range(2)]
        other_key = client.invoke("keyed", {"k": "b"})
        rated = [client.invoke("rated", n) for n in range(2)]
        windowed = client.invoke("windowed", 1)
        settle(coordinator)
        held = leases(worker)
        assert sorted(lease.execution_id for lease in held) == sorted(
            [first, capped[0], keyed[0], other_key, rated[0]])

        assert why(later).reason == "run_at"
        assert why(later).until == START + timedelta(hours=1)
        assert why(ready).reason == "ready"
        assert (why(capped[1]).reason, why(capped[1]).execution_ids) == (
            "concurrency", (capped[0],))
        assert (why(keyed[1]).reason, why(keyed[1]).execution_ids) == (
            "key_concurrency", (keyed[0],))
        assert "key 'a' is full" in why(keyed[1]).message
        limited = why(rated[1])
        assert limited.reason == "rate_limited"
        assert START < limited.until <= START + timedelta(hours=1, seconds=1)
        assert (why(windowed).reason, why(windowed).until) == (
            "window", START.replace(hour=20))
        assert client.get(first).explanation is None, "running: nothing to explain"

        other_queue = client.invoke("routed", 1, queue="elsewhere")
        assert client.get(other_queue).queue == "elsewhere"
        default_queue = client.invoke("routed", 2)
        assert client.get(default_queue).queue == "special"
        worker.close()
        gone = lambda: why(ready).reason  # noqa: E731
        assert gone() in ("ready", "no_worker")
    # the worker's row says it left once its stream ended
    _wait_no_worker(address, ready)


def _wait_no_worker(address: str, execution_id: str) -> None:
    from tests.conftest import wait_for
    with Client(address) as client:
        found = wait_for(lambda: (x := client.get(execution_id).explanation)
                         and x.reason == "no_worker" and x, what="no worker")
        assert "no connected worker runs task 'plain'" in found.message


@frozen
def test_queue_filter_of_a_worker_and_no_worker_for_a_queue(coordinator, clock, db):
    clock.set(START)
    address = coordinator.coordinator.address
    register = worker_pb2.Register(worker_id="picky", hostname="t", pid=1,
                                   tasks=[definition("q-task", capacity=5)], queues=["a"])
    worker = RawWorker.__new__(RawWorker)
    _start_raw(worker, address, register)
    with Client(address) as client:
        in_a = client.invoke("q-task", 1, queue="a")
        in_b = client.invoke("q-task", 2, queue="b")
        settle(coordinator)
        assert [lease.execution_id for lease in leases(worker)] == [in_a]
        explanation = client.get(in_b).explanation
        assert explanation.reason == "no_worker"
        assert "queue 'b'" in explanation.message
    worker.close()


def _start_raw(worker: RawWorker, address: str, register: worker_pb2.Register) -> None:
    """RawWorker.__init__ with a Register of the test's own."""
    import threading

    worker.channel = grpc.insecure_channel(address)
    worker._out = queue.Queue()
    worker.received = queue.Queue()
    worker.send(worker_pb2.WorkerMessage(register=register))
    from conductor.v1 import worker_pb2_grpc
    worker._responses = worker_pb2_grpc.WorkerServiceStub(worker.channel).Connect(
        worker._requests())
    threading.Thread(target=worker._read, daemon=True).start()
    worker.registered = worker.next("registered").registered
    worker._closed = threading.Event()
    threading.Thread(target=worker._beat, daemon=True).start()


@frozen
def test_debounce_runs_once_with_the_newest_payload(coordinator, clock, db):
    clock.set(START)
    address = coordinator.coordinator.address
    worker = RawWorker(address, definition("debounced", capacity=5))
    with Client(address) as client:
        first = client.invoke_info("debounced", 1, dedupe_key="k", debounce=10)
        clock.advance(timedelta(seconds=5))
        second = client.invoke_info("debounced", 2, dedupe_key="k", debounce=10)
        assert first.created and not second.created
        assert second.execution_id == first.execution_id
        assert client.get(first.execution_id).run_at == START + timedelta(seconds=15)
        clock.advance(timedelta(seconds=9))  # 14 s: 9 s after the newest invoke
        settle(coordinator)
        assert leases(worker) == []
        clock.advance(timedelta(seconds=2))
        settle(coordinator)
        got = leases(worker)
        assert [(lease.execution_id, lease.payload_json) for lease in got] == [
            (first.execution_id, "2")]
        # while it runs, another invoke with the key joins it (a dedupe holder)
        third = client.invoke_info("debounced", 3, dedupe_key="k", debounce=10)
        assert (third.execution_id, third.created) == (first.execution_id, False)
        worker.complete(first.execution_id, got[0].lease_token, "1")
        fourth = client.invoke_info("debounced", 4, dedupe_key="k", debounce=10)
        assert fourth.created, "a finished holder no longer holds the key"
    worker.close()


@frozen
def test_throttle_keeps_the_first_invoke_per_window(coordinator, clock, db):
    clock.set(START)
    address = coordinator.coordinator.address
    worker = RawWorker(address, definition("throttled", capacity=5))
    with Client(address) as client:
        first = client.invoke_info("throttled", 1, dedupe_key="k", throttle=10)
        again = client.invoke_info("throttled", 2, dedupe_key="k", throttle=10)
        other = client.invoke_info("throttled", 3, dedupe_key="other", throttle=10)
        assert first.created and other.created and not again.created
        assert again.execution_id == first.execution_id
        settle(coordinator)
        for lease in leases(worker):  # finish both: the window still holds
            worker.complete(lease.execution_id, lease.lease_token, "1")
        clock.advance(timedelta(seconds=9))
        late = client.invoke_info("throttled", 4, dedupe_key="k", throttle=10)
        assert (late.execution_id, late.created) == (first.execution_id, False)
        clock.advance(timedelta(seconds=2))
        fresh = client.invoke_info("throttled", 5, dedupe_key="k", throttle=10)
        assert fresh.created and fresh.execution_id != first.execution_id
    count = db.execute("SELECT count(*) FROM conductor_executions WHERE task = 'throttled'")
    assert count.fetchone()[0] == 3
    worker.close()


@frozen
def test_a_named_rate_limit_is_shared_by_its_tasks(start_coordinator, clock, db):
    clock.set(START)
    first, second = start_coordinator(), start_coordinator()
    a = RawWorker(first.coordinator.address,
                  definition("api-a", capacity=50, rate_limit="5/s", rate_limit_name="api"),
                  worker_id="a")
    b = RawWorker(second.coordinator.address,
                  definition("api-b", capacity=50, rate_limit="5/s", rate_limit_name="api"),
                  worker_id="b")
    with Client(first.coordinator.address) as client:
        client.invoke_batch("api-a", list(range(20)))
        client.invoke_batch("api-b", list(range(20)))
    settle(first, second)
    got = leases(a) + leases(b)
    assert len(got) == 5, "the bucket starts with 5 tokens for both tasks together"
    clock.advance(timedelta(seconds=1))
    settle(first, second)
    assert len(leases(a) + leases(b)) == 5
    clock.advance(timedelta(seconds=0.4))  # two tokens refilled
    settle(first, second)
    assert len(leases(a) + leases(b)) == 2
    a.close()
    b.close()


@frozen
def test_keys_from_the_payload_the_invoke_or_none(coordinator, clock, db):
    clock.set(START)
    address = coordinator.coordinator.address
    worker = RawWorker(address, definition("by-key", capacity=20, key="customer.id",
                                           key_concurrency=1))
    with Client(address) as client:
        a1 = client.invoke("by-key", {"customer": {"id": 7}})
        a2 = client.invoke("by-key", {"customer": {"id": 7}})
        forced = client.invoke("by-key", {"customer": {"id": 8}}, concurrency_key="7")
        keyless = [client.invoke("by-key", {"other": 1}) for _ in range(3)]
        assert client.get(a1).concurrency_key == "7"
        assert client.get(forced).concurrency_key == "7"
        assert client.get(keyless[0]).concurrency_key is None  # '' is shown as no key
    settle(coordinator)
    got = sorted(lease.execution_id for lease in leases(worker))
    assert got == sorted([a1, *keyless]), "one of key 7; the keyless are not limited by key"
    assert a2 not in got and forced not in got
    worker.close()


@frozen
def test_a_global_cap_and_a_key_cap_hold_together_and_explain_says_which(
    coordinator, clock, db
):
    clock.set(START)
    address = coordinator.coordinator.address
    worker = RawWorker(address, definition("both-caps", capacity=20, concurrency=3, key="k",
                                           key_concurrency=1))
    with Client(address) as client:
        a1, a2 = client.invoke("both-caps", {"k": "a"}), client.invoke("both-caps", {"k": "a"})
        b1, c1, d1 = (client.invoke("both-caps", {"k": k}) for k in "bcd")
        keyless = client.invoke("both-caps", {"other": 1})
        settle(coordinator)
        first = {lease.execution_id: lease for lease in leases(worker)}
        assert sorted(first) == sorted([a1, b1, c1]), "3 overall, one of key a"
        assert running(db, "both-caps") == sorted([a1, b1, c1], key=int)
        why = lambda eid: client.get(eid).explanation  # noqa: E731
        key_full, cap_full = why(a2), why(d1)
        assert (key_full.reason, key_full.execution_ids) == ("key_concurrency", (a1,))
        assert "key 'a' is full: 1 of 1 running" in key_full.message
        assert cap_full.reason == "concurrency"
        assert sorted(cap_full.execution_ids, key=int) == sorted([a1, b1, c1], key=int)
        assert "3 of 3 running" in cap_full.message
        assert why(keyless).reason == "concurrency", "keyless: limited by the global cap only"

        # b1 ends: one place overall, which a2 (key a still full) cannot take
        worker.complete(b1, first[b1].lease_token, "1")
        settle(coordinator)
        second = [lease.execution_id for lease in leases(worker)]
        assert len(second) == 1 and second[0] in (d1, keyless), second
        assert a2 not in second
        # a1 ends: its key frees and a2 runs; the cap is full again (3 running)
        worker.complete(a1, first[a1].lease_token, "1")
        settle(coordinator)
        assert [lease.execution_id for lease in leases(worker)] == [a2]
        assert len(running(db, "both-caps")) == 3
        waiting = ({d1, keyless} - set(second)).pop()
        assert why(waiting).reason == "concurrency"
    worker.close()


@pytest.fixture
def stub(coordinator):
    address = coordinator.coordinator.address
    worker = RawWorker(address, definition("known"))
    with grpc.insecure_channel(address) as channel:
        yield client_pb2_grpc.ConductorServiceStub(channel)
    worker.close()


def _options(**fields: Any) -> client_pb2.InvokeOptions:
    return client_pb2.InvokeOptions(**fields)


@pytest.mark.parametrize(
    ("method", "request_", "field"),
    [
        ("Invoke", client_pb2.InvokeRequest(task="known", options=_options(
            debounce_seconds=5)), "options.debounce_seconds"),
        ("Invoke", client_pb2.InvokeRequest(task="known", options=_options(
            throttle_seconds=-1, dedupe_key="k")), "options.throttle_seconds"),
        ("Invoke", client_pb2.InvokeRequest(task="known", options=_options(
            throttle_seconds=float("nan"), dedupe_key="k")), "options.throttle_seconds"),
        ("Invoke", client_pb2.InvokeRequest(task="known", options=_options(
            throttle_seconds=1, debounce_seconds=1, dedupe_key="k")),
         "options.throttle_seconds"),
        ("Invoke", client_pb2.InvokeRequest(task="known", options=_options(
            concurrency_key="x" * 201)), "options.concurrency_key"),
        ("InvokeBatch", client_pb2.InvokeBatchRequest(task="known", payloads_json=["1"],
                                                      options=_options(debounce_seconds=1)),
         "options.debounce_seconds"),
    ],
)
def test_bad_flow_options_of_an_invoke_name_the_field(stub, db, method, request_, field):
    with pytest.raises(grpc.RpcError) as info:
        getattr(stub, method)(request_, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith(field + ":"), info.value.details()
    assert db.execute("SELECT count(*) FROM conductor_executions").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"rate_limit": "fast"}, "register.tasks[0].rate_limit"),
        ({"rate_limit": "0/s"}, "register.tasks[0].rate_limit"),
        ({"rate_limit": "5/8d"}, "register.tasks[0].rate_limit"),
        ({"rate_limit_name": "api"}, "register.tasks[0].rate_limit_name"),
        ({"rate_limit": "1/s", "rate_limit_name": "a b"}, "register.tasks[0].rate_limit_name"),
        ({"key": "a..b"}, "register.tasks[0].key"),
        ({"key": "a.$b"}, "register.tasks[0].key"),
        ({"key_concurrency": -1}, "register.tasks[0].key_concurrency"),
        ({"concurrency": 2, "key_concurrency": 3}, "register.tasks[0].key_concurrency"),
        ({"queue": "two words"}, "register.tasks[0].queue"),
    ],
)
def test_bad_flow_settings_refuse_the_registration(coordinator, db, fields, field):
    with pytest.raises(grpc.RpcError) as info:
        RawWorker(coordinator.coordinator.address, definition("bad-flow", **fields))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith(field + ":"), info.value.details()
    assert db.execute("SELECT count(*) FROM conductor_tasks").fetchone()[0] == 0


def test_a_bad_queue_of_a_worker_refuses_the_registration(coordinator, db):
    register = worker_pb2.Register(worker_id="w", hostname="t", pid=1,
                                   tasks=[definition("ok-task")], queues=["ok", "not,ok"])
    worker = RawWorker.__new__(RawWorker)
    with pytest.raises(grpc.RpcError) as info:
        _start_raw(worker, coordinator.coordinator.address, register)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("register.queues[1]:"), info.value.details()
    assert db.execute("SELECT count(*) FROM conductor_tasks").fetchone()[0] == 0
