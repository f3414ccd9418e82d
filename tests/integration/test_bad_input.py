"""Bad input is refused with the right status, naming the field, and writes nothing."""

from __future__ import annotations

import grpc
import pytest

from conductor.v1 import client_pb2, client_pb2_grpc, worker_pb2
from conductor_worker import Client
from tests.integration.raw_worker import RawWorker, definition


@pytest.fixture
def stub(start_coordinator):
    coordinator = start_coordinator(max_payload_bytes=1000)
    address = coordinator.coordinator.address
    worker = RawWorker(address, definition("known"))
    with grpc.insecure_channel(address) as channel:
        yield client_pb2_grpc.ConductorServiceStub(channel)
    worker.close()


def _refused(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=10)
    return info.value


def _no_executions(db) -> None:
    assert db.execute("SELECT count(*) FROM conductor_executions").fetchone()[0] == 0


def test_unknown_task_is_not_found(stub, db):
    error = _refused(stub.Invoke, client_pb2.InvokeRequest(task="nope", payload_json="1"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "nope" in error.details() and error.details().startswith("task")
    error = _refused(stub.InvokeBatch, client_pb2.InvokeBatchRequest(task="nope",
                                                                    payloads_json=["1"]))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    _no_executions(db)


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (client_pb2.InvokeRequest(task="known", payload_json="{not json"), "payload_json"),
        (client_pb2.InvokeRequest(task="known", payload_json='"' + "x" * 1200 + '"'),
         "payload_json"),
        (client_pb2.InvokeRequest(task="known", payload_json="NaN"), "payload_json"),
        (client_pb2.InvokeRequest(task="", payload_json="1"), "task"),
        (client_pb2.InvokeRequest(task="known", options=client_pb2.InvokeOptions(
            delay_seconds=-1)), "options.delay_seconds"),
        (client_pb2.InvokeRequest(task="known", options=client_pb2.InvokeOptions(
            max_attempts=-2)), "options.max_attempts"),
    ],
)
def test_invalid_invoke_names_the_field(stub, db, request_, field):
    error = _refused(stub.Invoke, request_)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(field + ":"), error.details()
    _no_executions(db)


def test_one_bad_payload_rejects_the_whole_batch(stub, db):
    error = _refused(stub.InvokeBatch, client_pb2.InvokeBatchRequest(
        task="known", payloads_json=["1", "2", "{oops"]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("payloads_json[2]:")
    error = _refused(stub.InvokeBatch, client_pb2.InvokeBatchRequest(
        task="known", payloads_json=["1", "x" * 2000]))
    assert "payloads_json[1]" in error.details() and "limit is 1000" in error.details()
    _no_executions(db)


def test_bad_execution_ids(stub):
    error = _refused(stub.GetExecution, client_pb2.GetExecutionRequest(execution_id="abc"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("execution_id:")
    error = _refused(stub.GetExecution, client_pb2.GetExecutionRequest(execution_id="424242"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    error = _refused(stub.WaitExecution, client_pb2.WaitExecutionRequest(
        execution_id="1", timeout_seconds=-1))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("timeout_seconds:")


def test_bad_task_definition_refuses_registration(coordinator, db):
    address = coordinator.coordinator.address
    bad = definition("windowed", window=worker_pb2.Window(start="10:00", end="10:00"))
    with pytest.raises(grpc.RpcError) as info:
        RawWorker(address, bad)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "register.tasks[0].window" in info.value.details()
    bad_zone = definition("zoned", timezone="Mars/Olympus")
    with pytest.raises(grpc.RpcError) as info:
        RawWorker(address, bad_zone)
    assert "register.tasks[0].timezone" in info.value.details()
    for name, value in (("failed_seconds", -1.0), ("redact_after_seconds", float("nan")),
                        ("succeeded_seconds", 1e300)):
        kept = definition("kept", retention=worker_pb2.Retention(**{name: value}))
        with pytest.raises(grpc.RpcError) as info:
            RawWorker(address, kept)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details().startswith(f"register.tasks[0].retention.{name}:")
    assert db.execute("SELECT count(*) FROM conductor_tasks").fetchone()[0] == 0


def test_unstorable_worker_writes_are_refused_not_left_hanging(coordinator, db):
    """A step result or return value that PostgreSQL cannot store (a NUL in a string) is
    answered: the step save as INVALID naming the field, the completion as a failed attempt.
    Nothing of it is written, and the other writes of the same message go through."""
    address = coordinator.coordinator.address
    worker = RawWorker(address, definition("unstorable", max_attempts=3))
    with Client(address) as client:
        execution_id = client.invoke("unstorable")
        lease = worker.next("leases").leases.items[0]
        token = lease.lease_token
        worker.send(worker_pb2.WorkerMessage(step_saves=worker_pb2.StepSaves(items=[
            worker_pb2.StepSave(execution_id=execution_id, lease_token=token, name="bad",
                                result_json='"a\\u0000b"'),
            worker_pb2.StepSave(execution_id=execution_id, lease_token=token, name="good",
                                result_json='"a\\\\u0000b"'),  # an escaped backslash: fine
        ])))
        acks = {}
        while len(acks) < 2:
            for ack in worker.next("step_acks").step_acks.items:
                acks[ack.name] = ack
        assert acks["bad"].status == worker_pb2.WRITE_STATUS_INVALID
        assert "result_json" in acks["bad"].error and "NUL" in acks["bad"].error
        assert acks["good"].status == worker_pb2.WRITE_STATUS_OK
        assert [s.name for s in client.steps(execution_id)] == ["good"]

        ack = worker.complete(execution_id, token, '{"text": "\\u0000"}')
        assert ack.status == worker_pb2.WRITE_STATUS_OK
        execution = client.get(execution_id)
        assert execution.state == "failed", "not retried: the same result would be refused"
        assert execution.error.type == "InvalidResult"
        assert "result_json" in execution.error.message
        assert execution.result is None
    worker.close()
