"""Log lines from workers (LogLines), kept bounded and read back (ListLogs); GetStatus; and
what an OutcomeAck tells the worker about the execution afterwards."""

from __future__ import annotations

import grpc
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from conductor.v1 import client_pb2, client_pb2_grpc, common_pb2, worker_pb2
from conductor_worker import Client
from tests.conftest import wait_for
from tests.integration.raw_worker import RawWorker, definition


def _line(execution_id: str, message: str) -> worker_pb2.LogLine:
    return worker_pb2.LogLine(execution_id=execution_id, attempt=1, level="INFO",
                              message=message)


def _send_lines(worker: RawWorker, *lines: worker_pb2.LogLine) -> None:
    worker.send(worker_pb2.WorkerMessage(log_lines=worker_pb2.LogLines(items=list(lines))))


def test_lines_of_held_executions_are_kept_bounded_and_cut(start_coordinator):
    coordinator = start_coordinator(max_log_lines=4, max_log_line_bytes=20)
    address = coordinator.coordinator.address
    worker = RawWorker(address, definition("logged"))
    try:
        with Client(address) as client:
            held = client.invoke("logged", 1)
            other = client.invoke("logged", 2, delay=3600)  # pending: leased to nobody
            lease = worker.next("leases").leases.items[0]
            assert lease.execution_id == held
            _send_lines(worker, _line(held, "one"), _line(other, "not held"),
                        _line("nonsense", "bad id"), _line(held, "two\x00" + "x" * 40))
            wait_for(lambda: len(client.logs(held)) == 2, what="the kept lines")
            _send_lines(worker, *[_line(held, f"more {i}") for i in range(5)])
            wait_for(lambda: len(client.logs(held)) == 4, what="the bound")
            _send_lines(worker, _line(held, "over the bound"))
            ack = worker.complete(held, lease.lease_token, "1")  # after the last lines
            kept = client.logs(held)
            assert [x.message for x in kept] == [
                "one", "two\\x00" + "x" * 13 + " [truncated]", "more 0", "more 1"]
            assert client.logs(other) == []
            assert [x.message for x in client.logs(held, after=kept[1].sequence)] == [
                "more 0", "more 1"]
        assert (ack.status, ack.state, ack.HasField("run_at")) == (
            worker_pb2.WRITE_STATUS_OK, "succeeded", False)
    finally:
        worker.close()


def test_a_failed_attempt_s_ack_says_when_it_is_retried(coordinator):
    address = coordinator.coordinator.address
    worker = RawWorker(address, definition("retried"))
    try:
        with Client(address) as client:
            execution_id = client.invoke("retried", None)
            lease = worker.next("leases").leases.items[0]
            worker.send(worker_pb2.WorkerMessage(outcomes=worker_pb2.Outcomes(items=[
                worker_pb2.Outcome(execution_id=execution_id, lease_token=lease.lease_token,
                                   failed=worker_pb2.Failed(error=common_pb2.ErrorInfo(
                                       type="KeyError", message="x"), retryable=True))])))
            ack = worker.next("outcome_acks").outcome_acks.items[0]
            assert (ack.state, ack.HasField("run_at")) == ("pending", True)
            assert ack.run_at.ToDatetime().timestamp() == pytest.approx(
                client.get(execution_id).run_at.timestamp(), abs=0.01)
    finally:
        worker.close()


@pytest.mark.parametrize(
    ("request_", "code", "field"),
    [
        (client_pb2.ListLogsRequest(execution_id="x"), grpc.StatusCode.INVALID_ARGUMENT,
         "execution_id"),
        (client_pb2.ListLogsRequest(execution_id="1", after=-1),
         grpc.StatusCode.INVALID_ARGUMENT, "after"),
        (client_pb2.ListLogsRequest(execution_id="1", limit=1001),
         grpc.StatusCode.INVALID_ARGUMENT, "limit"),
        (client_pb2.ListLogsRequest(execution_id="999"), grpc.StatusCode.NOT_FOUND, ""),
    ],
)
def test_list_logs_refuses_bad_input(coordinator, request_, code, field):
    with grpc.insecure_channel(coordinator.coordinator.address) as channel:
        stub = client_pb2_grpc.ConductorServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.ListLogs(request_, timeout=10)
    assert info.value.code() == code
    assert info.value.details().startswith(field)


def test_status_names_the_database_without_credentials(clock, database_url):
    from conductor_server.app import CoordinatorThread
    from conductor_server.settings import Settings

    url = make_conninfo(database_url, password="secret")  # (trust auth ignores it)
    coordinator = CoordinatorThread(Settings(database_url=url, port=0), clock)
    coordinator.start()
    try:
        with Client(coordinator.coordinator.address) as client:
            status = client.status()
    finally:
        coordinator.stop()
    assert status.database_ok and status.database_error == ""
    parts = conninfo_to_dict(database_url)  # 127.0.0.1:5432, or an embedded server's socket
    place = f"{parts.get('host') or 'localhost'}:{parts.get('port') or '5432'}/"
    assert status.database.startswith(place) and "secret" not in status.database
    assert status.data_dir is None and status.version


def test_a_database_error_on_log_lines_drops_them_and_keeps_the_stream(coordinator):
    address = coordinator.coordinator.address
    store = coordinator.coordinator.store
    failed: list[int] = []

    async def broken(lines, most):
        failed.append(len(lines))
        raise ConnectionError("simulated outage")

    worker = RawWorker(address, definition("logged"))
    try:
        with Client(address) as client:
            execution_id = client.invoke("logged", 1)
            lease = worker.next("leases").leases.items[0]
            store.insert_log_lines = broken
            _send_lines(worker, _line(execution_id, "lost"))
            wait_for(lambda: failed == [1], what="the failed insert")
            ack = worker.save_step(execution_id, lease.lease_token, "after", "1")
            assert ack.status == worker_pb2.WRITE_STATUS_OK  # the same stream goes on
            del store.insert_log_lines
            assert client.logs(execution_id) == []
    finally:
        worker.close()
