"""Invokes with a request id: a retry gets the first answer and creates nothing new."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import grpc
import pytest

from conductor.v1 import client_pb2, client_pb2_grpc
from conductor_server import idempotency
from conductor_worker import Client
from tests.integration.raw_worker import RawWorker, definition


@pytest.fixture
def address(start_coordinator):
    coordinator = start_coordinator()
    address = coordinator.coordinator.address
    worker = RawWorker(address, definition("known"))
    yield address
    worker.close()


@pytest.fixture
def stub(address):
    with grpc.insecure_channel(address) as channel:
        yield client_pb2_grpc.ConductorServiceStub(channel)


def _count(db) -> int:
    return db.execute("SELECT count(*) FROM conductor_executions").fetchone()[0]


def test_a_repeated_invoke_returns_the_first_answer(stub, db):
    request = client_pb2.InvokeRequest(task="known", payload_json="1", request_id="req-1")
    first = stub.Invoke(request, timeout=10)
    again = stub.Invoke(request, timeout=10)
    assert (again.execution_id, again.created) == (first.execution_id, True)
    assert _count(db) == 1
    other = stub.Invoke(client_pb2.InvokeRequest(task="known", payload_json="1",
                                                 request_id="req-2"), timeout=10)
    assert other.execution_id != first.execution_id
    assert _count(db) == 2


def test_a_repeated_batch_returns_the_same_ids_in_order(stub, db):
    request = client_pb2.InvokeBatchRequest(task="known", payloads_json=["1", "2", "3"],
                                            request_id="batch-1")
    first = list(stub.InvokeBatch(request, timeout=10).execution_ids)
    assert list(stub.InvokeBatch(request, timeout=10).execution_ids) == first
    assert len(set(first)) == 3 and _count(db) == 3


def test_a_dedupe_answer_is_repeated_as_such(stub, db):
    options = client_pb2.InvokeOptions(dedupe_key="k")
    holder = stub.Invoke(client_pb2.InvokeRequest(task="known", options=options), timeout=10)
    request = client_pb2.InvokeRequest(task="known", options=options, request_id="dedupe-1")
    first = stub.Invoke(request, timeout=10)
    assert (first.execution_id, first.created) == (holder.execution_id, False)
    db.execute("UPDATE conductor_executions SET state = 'cancelled', lease_expires_at = NULL")
    again = stub.Invoke(request, timeout=10)
    assert (again.execution_id, again.created) == (holder.execution_id, False)
    assert _count(db) == 1


def test_racing_retries_create_one_execution(address, db):
    answers: list[str] = []
    barrier = threading.Barrier(8)

    def invoke() -> None:
        with grpc.insecure_channel(address) as channel:
            stub = client_pb2_grpc.ConductorServiceStub(channel)
            request = client_pb2.InvokeRequest(task="known", request_id="race")
            barrier.wait(10)
            answers.append(stub.Invoke(request, timeout=30).execution_id)

    threads = [threading.Thread(target=invoke) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(answers) == 8 and len(set(answers)) == 1
    assert _count(db) == 1


@pytest.mark.parametrize(
    ("request_id", "problem"),
    [("x" * 129, "129 characters; at most 128"), ("has space", "characters other than"),
     ("ünïcode", "characters other than"), ("a/b", "characters other than")],
)
def test_bad_request_ids_are_refused_naming_the_field(stub, db, request_id, problem):
    for call, request in [
        (stub.Invoke, client_pb2.InvokeRequest(task="known", request_id=request_id)),
        (stub.InvokeBatch, client_pb2.InvokeBatchRequest(task="known", payloads_json=["1"],
                                                         request_id=request_id)),
    ]:
        with pytest.raises(grpc.RpcError) as info:
            call(request, timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details().startswith("request_id:"), info.value.details()
        assert problem in info.value.details()
    assert _count(db) == 0


def test_a_request_id_reused_for_another_call_is_refused(stub, db):
    stub.Invoke(client_pb2.InvokeRequest(task="known", request_id="once"), timeout=10)
    with pytest.raises(grpc.RpcError) as info:
        stub.InvokeBatch(client_pb2.InvokeBatchRequest(task="known", payloads_json=["1", "2"],
                                                       request_id="once"), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == (
        "request_id: already used by an invoke of 1 payload(s) of task 'known'"
    )
    assert _count(db) == 1


def test_expired_request_ids_are_deleted_by_later_invokes(stub, db, clock):
    for i in range(3):
        stub.Invoke(client_pb2.InvokeRequest(task="known", request_id=f"old-{i}"), timeout=10)
    clock.advance(idempotency.RETENTION + timedelta(minutes=1))
    stub.Invoke(client_pb2.InvokeRequest(task="known", request_id="new-0"), timeout=10)

    def kept() -> list[str]:
        rows = db.execute("SELECT request_id FROM conductor_invoke_requests ORDER BY 1")
        return [r[0] for r in rows.fetchall()]

    assert kept() == ["new-0", "old-2"], "at most two expired records go per invoke"
    stub.Invoke(client_pb2.InvokeRequest(task="known", request_id="new-1"), timeout=10)
    assert kept() == ["new-0", "new-1"]


class _LostResponse(grpc.RpcError, grpc.Call):  # type: ignore[misc]
    """What a caller sees when the connection drops after the coordinator committed."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "connection lost (injected by the test)"

    def initial_metadata(self) -> Any:
        return ()

    def trailing_metadata(self) -> Any:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float | None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Any) -> bool:
        return False


class _LoseFirstResponse(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Lets each method's first call reach the coordinator, then drops its answer."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        self.sent.append(request)
        outcome = continuation(details, request)
        if len(self.sent) == 1:
            outcome.result()  # the coordinator answered (and committed)
            raise _LostResponse()
        return outcome


@pytest.mark.parametrize("batch", [False, True])
def test_the_client_retries_an_invoke_whose_answer_was_lost(address, db, batch):
    lossy = _LoseFirstResponse()
    with Client(address) as client:
        client._stub = client_pb2_grpc.ConductorServiceStub(
            grpc.intercept_channel(client._channel, lossy)
        )
        ids = client.invoke_batch("known", [1, 2]) if batch else [client.invoke("known", 1)]
    assert len(lossy.sent) == 2, "the client retried once"
    assert lossy.sent[0].request_id == lossy.sent[1].request_id != ""
    rows = db.execute("SELECT id FROM conductor_executions ORDER BY id").fetchall()
    assert [str(r[0]) for r in rows] == ids
