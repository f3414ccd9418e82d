"""Workflow input the coordinator refuses (INVALID_ARGUMENT naming the field, nothing
written) and the fencing of workflow waits by lease token."""

from __future__ import annotations

import uuid

import grpc
import pytest

from conductor.v1 import client_pb2, client_pb2_grpc, worker_pb2
from conductor_worker import Client
from tests.integration.raw_worker import RawWorker, definition


def _refused(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=10)
    return info.value


@pytest.fixture
def stub(coordinator):
    channel = grpc.insecure_channel(coordinator.coordinator.address)
    yield client_pb2_grpc.ConductorServiceStub(channel)
    channel.close()


def _subscription(event: str, filter_json: str = "") -> worker_pb2.TaskDefinition:
    task = definition("subscriber")
    task.subscriptions.append(worker_pb2.EventSubscription(event=event,
                                                           filter_json=filter_json))
    return task


@pytest.mark.parametrize(("event", "filter_json", "field"), [
    ("bad event", "", "register.tasks[0].subscriptions[0].event"),
    ("ok.event", "[1]", "register.tasks[0].subscriptions[0].filter_json"),
    ("ok.event", '{"a..b": 1}', "register.tasks[0].subscriptions[0].filter_json"),
    ("ok.event", "{nope", "register.tasks[0].subscriptions[0].filter_json"),
])
def test_bad_subscriptions_refuse_registration(coordinator, db, event, filter_json, field):
    with pytest.raises(grpc.RpcError) as info:
        RawWorker(coordinator.coordinator.address, _subscription(event, filter_json))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith(field + ":"), info.value.details()
    assert db.execute("SELECT count(*) FROM conductor_tasks").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM conductor_subscriptions").fetchone()[0] == 0


def test_bad_signals_and_waits_are_refused(coordinator, stub, db):
    address = coordinator.coordinator.address
    worker = RawWorker(address, definition("waiter"))
    with Client(address) as client:
        execution_id = client.invoke("waiter")
        lease = worker.next("leases").leases.items[0]
    error = _refused(stub.Signal, client_pb2.SignalRequest(execution_id=execution_id))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("name:")
    error = _refused(stub.Signal, client_pb2.SignalRequest(execution_id="999999", name="x"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    base = {"execution_id": execution_id, "lease_token": lease.lease_token, "step": "s"}
    for fields, field in [
        ({"kind": client_pb2.WAIT_KIND_EVENT, "name": "bad name"}, "name:"),
        ({"kind": client_pb2.WAIT_KIND_EVENT, "name": "e", "match_json": "3"}, "match_json:"),
        ({"kind": client_pb2.WAIT_KIND_SIGNAL, "name": "x", "timeout_seconds": -1},
         "timeout_seconds:"),
        ({"kind": client_pb2.WAIT_KIND_CHILDREN, "task": "waiter"}, "payloads_json:"),
        ({"kind": client_pb2.WAIT_KIND_CHILDREN, "task": "waiter", "payloads_json": ["{"]},
         "payloads_json[0]:"),
        ({"kind": 0}, "kind:"),
    ]:
        request = client_pb2.WorkflowWaitRequest(**{**base, **fields})
        error = _refused(stub.WorkflowWait, request)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, fields
        assert error.details().startswith(field), (fields, error.details())
    unknown = client_pb2.WorkflowWaitRequest(
        **base, kind=client_pb2.WAIT_KIND_CHILDREN, task="nope", payloads_json=["1"])
    assert _refused(stub.WorkflowWait, unknown).code() == grpc.StatusCode.NOT_FOUND
    # a stale token: refused, and nothing is created
    stale = client_pb2.WorkflowWaitRequest(
        **{**base, "lease_token": str(uuid.uuid4())}, kind=client_pb2.WAIT_KIND_CHILDREN,
        task="waiter", payloads_json=["1"])
    assert _refused(stub.WorkflowWait, stale).code() == grpc.StatusCode.FAILED_PRECONDITION
    assert db.execute("SELECT count(*) FROM conductor_waits").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM conductor_executions").fetchone()[0] == 1
    # the current token: created once, however often it is asked
    good = client_pb2.WorkflowWaitRequest(
        **base, kind=client_pb2.WAIT_KIND_CHILDREN, task="waiter", payloads_json=["1", "2"])
    first = stub.WorkflowWait(good, timeout=10)
    again = stub.WorkflowWait(good, timeout=10)
    assert first.waiting and list(first.execution_ids) == list(again.execution_ids)
    assert len(first.execution_ids) == 2
    assert db.execute("SELECT count(*) FROM conductor_executions").fetchone()[0] == 3
    other_kind = client_pb2.WorkflowWaitRequest(**base, kind=client_pb2.WAIT_KIND_SIGNAL,
                                                name="x")
    error = _refused(stub.WorkflowWait, other_kind)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("step:")
    worker.close()
