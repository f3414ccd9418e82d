"""Regression tests for issue 11 ("Hostile input"), one or more per numbered defect.

Every bad request is refused cleanly (the right code, a message naming the field, no internal
text), nothing of it is written, and no stream, session or other worker is affected.
"""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from conductor.v1 import client_pb2, client_pb2_grpc, common_pb2, worker_pb2, worker_pb2_grpc
from conductor_server.models import LeaseRef
from conductor_server.sessions import Session
from conductor_worker import Client
from tests.conftest import wait_for
from tests.integration.raw_worker import RawWorker, definition

DEEP = "[" * 10_000 + "]" * 10_000


def _register(address: str, register: worker_pb2.Register, timeout: float = 10) -> Any:
    """Open a stream with `register`; returns the first reply or the RpcError."""
    with grpc.insecure_channel(address) as channel:
        stream = worker_pb2_grpc.WorkerServiceStub(channel).Connect(
            iter([worker_pb2.WorkerMessage(register=register)]), timeout=timeout
        )
        try:
            return next(stream)
        except grpc.RpcError as exc:
            return exc


def _refused_register(address: str, register: worker_pb2.Register) -> grpc.RpcError:
    reply = _register(address, register)
    assert isinstance(reply, grpc.RpcError), reply
    return reply


def _rows(db, table: str) -> int:
    return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


@pytest.fixture
def stub(coordinator):
    with grpc.insecure_channel(coordinator.coordinator.address) as channel:
        yield client_pb2_grpc.ConductorServiceStub(channel)


def _refused(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=10)
    return info.value


# -- 1. one bad row never stops the reaper ---------------------------------------------------


def test_huge_backoff_is_refused_at_registration(coordinator, db):
    task = definition("huge")
    task.retry.initial_backoff_seconds = 1e300
    task.retry.max_backoff_seconds = 1e300
    error = _refused_register(coordinator.coordinator.address, worker_pb2.Register(
        worker_id="w", tasks=[task]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("register.tasks[0].retry:"), error.details()
    assert _rows(db, "conductor_tasks") == 0


def test_a_task_with_a_huge_stored_backoff_does_not_stop_lease_expiry(start_coordinator, db):
    """Rows stored before backoffs were bounded (a finite 1e300) made every reaper pass fail
    (DatetimeFieldOverflow), so expired leases of *all* tasks stayed running."""
    coordinator = start_coordinator(lease_timeout=0.5)
    address = coordinator.coordinator.address
    worker = RawWorker(address, definition("poison"), definition("healthy"), worker_id="w1")
    db.execute("UPDATE conductor_tasks SET initial_backoff = 1e300, max_backoff = 1e300,"
               " backoff_multiplier = 1e300 WHERE name = 'poison'")
    with Client(address) as client:
        ids = [client.invoke("poison"), client.invoke("healthy")]
    leased = set()
    while len(leased) < 2:
        leased |= {lease.execution_id for lease in worker.next("leases").leases.items}
    worker.close()  # no heartbeats: both leases expire

    def states() -> list[tuple[str, str]]:
        return db.execute(
            "SELECT state::text, error->>'type' FROM conductor_executions WHERE id = ANY(%s)"
            " ORDER BY id", ([int(i) for i in ids],)).fetchall()

    wait_for(lambda: all(s == "pending" for s, _ in states()), what="both leases reaped")
    assert [t for _, t in states()] == ["WorkerLost", "WorkerLost"]
    retry_at = db.execute("SELECT run_at - now() FROM conductor_executions WHERE id = %s",
                          (int(ids[0]),)).fetchone()[0]
    assert retry_at.days <= 366 * 100  # clamped, not overflowing


# -- 2. registration is all-or-nothing -------------------------------------------------------


def test_failed_registration_leaves_no_session_that_takes_work(coordinator, db):
    address = coordinator.coordinator.address
    good = RawWorker(address, definition("shared", capacity=100), worker_id="good")
    bad = worker_pb2.Register(worker_id="bad", hostname="host\x00name",
                              tasks=[definition("shared", capacity=100)])
    error = _refused_register(address, bad)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("register.hostname:")
    dispatcher = coordinator.coordinator.dispatcher
    assert [s.worker_id for s in dispatcher.sessions.values()] == ["good"]
    with Client(address) as client:
        for n in range(20):
            client.invoke("shared", n)
    got = 0
    while got < 20:
        got += len(good.next("leases").leases.items)
    workers = db.execute("SELECT DISTINCT worker_id FROM conductor_executions").fetchall()
    assert workers == [("good",)]
    assert [w[0] for w in db.execute("SELECT worker_id FROM conductor_workers")] == ["good"]
    good.close()


def test_registration_whose_writes_fail_is_not_visible_to_leasing(coordinator):
    """A write failing (or the call cancelled) after some writes leaves no session."""
    dispatcher = coordinator.coordinator.dispatcher
    session = Session(worker_id="half", tasks={}, capacity={})

    async def failing() -> None:
        raise RuntimeError("static schedules could not be stored")

    with pytest.raises(RuntimeError):
        coordinator.run(dispatcher.connect(session, [], before_visible=failing))
    assert session.id not in dispatcher.sessions


# -- 3. unstorable worker writes are refused one by one -------------------------------------


def _saves(worker: RawWorker, eid: str, token: str, items: list[tuple[str, str]]) -> dict:
    worker.send(worker_pb2.WorkerMessage(step_saves=worker_pb2.StepSaves(items=[
        worker_pb2.StepSave(execution_id=eid, lease_token=token, name=n, result_json=r)
        for n, r in items])))
    acks: dict[str, worker_pb2.StepAck] = {}
    while len(acks) < len(items):
        for ack in worker.next("step_acks").step_acks.items:
            acks[ack.name] = ack
    return acks


def test_unstorable_step_saves_are_refused_each_on_its_own(coordinator, db):
    address = coordinator.coordinator.address
    worker = RawWorker(address, definition("steps"), worker_id="w1")
    other = RawWorker(address, definition("steps2"), worker_id="w2")
    with Client(address) as client:
        eid = client.invoke("steps")
        other_id = client.invoke("steps2")
    lease = worker.next("leases").leases.items[0]
    other_lease = other.next("leases").leases.items[0]
    bad = [("nul\x00name", '"x"'), ("x" * 10_000, '"x"'), ("surrogate", '"\\ud800"'),
           ("deep", DEEP), ("huge-number", "1e999999")]
    acks = _saves(worker, eid, lease.lease_token, [*bad, ("fine", '"ok"')])
    # the other worker saves at the same time; its save shares the group commit
    other_acks = _saves(other, other_id, other_lease.lease_token, [("theirs", "1")])
    for name, _ in bad:
        assert acks[name].status == worker_pb2.WRITE_STATUS_INVALID, name
        assert acks[name].error.split(":")[0] in ("name", "result_json"), acks[name].error
    assert acks["fine"].status == worker_pb2.WRITE_STATUS_OK
    assert other_acks["theirs"].status == worker_pb2.WRITE_STATUS_OK
    assert sorted(r[0] for r in db.execute("SELECT name FROM conductor_steps")) == [
        "fine", "theirs"]
    # both streams are still open and serving
    assert worker.save_step(eid, lease.lease_token, "after", "2").status == (
        worker_pb2.WRITE_STATUS_OK)
    assert other.complete(other_id, other_lease.lease_token, "3").status == (
        worker_pb2.WRITE_STATUS_OK)
    worker.close()
    other.close()


def test_handler_error_text_with_nul_is_stored_sanitised(start_coordinator, db):
    coordinator = start_coordinator(max_error_bytes=1000)
    address = coordinator.coordinator.address
    worker = RawWorker(address, definition("raises", max_attempts=1), worker_id="w1")
    with Client(address) as client:
        eid = client.invoke("raises")
        lease = worker.next("leases").leases.items[0]
        worker.send(worker_pb2.WorkerMessage(outcomes=worker_pb2.Outcomes(items=[
            worker_pb2.Outcome(execution_id=eid, lease_token=lease.lease_token,
                               failed=worker_pb2.Failed(error=common_pb2.ErrorInfo(
                                   type="Value\x00Error", message="bad header: b\x00\x01",
                                   traceback="T" * 5000), retryable=False))])))
        ack = worker.next("outcome_acks").outcome_acks.items[0]
        assert ack.status == worker_pb2.WRITE_STATUS_OK
        execution = client.get(eid)
    assert execution.state == "failed"
    assert execution.error.message == "bad header: b\\x00\x01"
    assert execution.error.type == "Value\\x00Error"
    assert len(execution.error.traceback.encode()) <= 1000 + len(" [truncated]")
    assert execution.error.traceback.endswith("[truncated]")
    # the stream was not closed: the worker keeps working on it
    with Client(address) as client:
        client.invoke("raises")
    assert worker.next("leases").leases.items
    worker.close()


def test_unstorable_outcomes_become_failed_attempts_saying_why(coordinator, db):
    address = coordinator.coordinator.address
    worker = RawWorker(address, definition("outs", capacity=10, max_attempts=1),
                       worker_id="w1")
    with Client(address) as client:
        ids = [client.invoke("outs", n) for n in range(3)]
        leases: dict[str, worker_pb2.Lease] = {}
        while len(leases) < 3:
            leases.update({x.execution_id: x for x in worker.next("leases").leases.items})
        far = Timestamp(seconds=253402300800 + 10)  # after 9999-12-31
        items = [
            worker_pb2.Outcome(execution_id=ids[0], lease_token=leases[ids[0]].lease_token,
                               completed=worker_pb2.Completed(result_json=DEEP)),
            worker_pb2.Outcome(execution_id=ids[1], lease_token=leases[ids[1]].lease_token,
                               released=worker_pb2.Released(run_at=far)),
            worker_pb2.Outcome(execution_id=ids[2], lease_token=leases[ids[2]].lease_token,
                               completed=worker_pb2.Completed(result_json='"fine"')),
        ]
        worker.send(worker_pb2.WorkerMessage(outcomes=worker_pb2.Outcomes(items=items)))
        acks: dict[str, Any] = {}
        while len(acks) < 3:
            acks.update({a.execution_id: a for a in worker.next("outcome_acks")
                         .outcome_acks.items})
        assert all(a.status == worker_pb2.WRITE_STATUS_OK for a in acks.values())
        first, second, third = (client.get(i) for i in ids)
    assert first.state == "failed" and first.error.type == "InvalidResult"
    assert "nested deeper" in first.error.message
    assert second.state == "failed" and second.error.type == "InvalidOutcome"
    assert "released.run_at" in second.error.message
    assert third.state == "succeeded" and third.result == "fine"
    worker.close()


# -- 4. every bad client input is INVALID_ARGUMENT naming the field --------------------------


def _options(**fields: Any) -> client_pb2.InvokeOptions:
    return client_pb2.InvokeOptions(**fields)


CLIENT_CASES = [
    ("Invoke", client_pb2.InvokeRequest(task="t\x00"), "task"),
    ("Invoke", client_pb2.InvokeRequest(task="known", options=_options(queue="q\x00")),
     "options.queue"),
    ("Invoke", client_pb2.InvokeRequest(task="known", options=_options(dedupe_key="\x00")),
     "options.dedupe_key"),
    ("Invoke", client_pb2.InvokeRequest(task="known", payload_json='"\\ud800"'),
     "payload_json"),
    ("Invoke", client_pb2.InvokeRequest(task="known", payload_json='{"a": "\\u0000"}'),
     "payload_json"),
    ("Invoke", client_pb2.InvokeRequest(task="known", payload_json=DEEP), "payload_json"),
    ("Invoke", client_pb2.InvokeRequest(task="known", payload_json="1e400000"),
     "payload_json"),
    ("Invoke", client_pb2.InvokeRequest(task="known", options=_options(
        run_at=Timestamp(seconds=253402300800 + 86400))), "options.run_at"),
    ("Invoke", client_pb2.InvokeRequest(task="known", options=_options(
        run_at=Timestamp(seconds=10, nanos=-1))), "options.run_at"),
    ("Invoke", client_pb2.InvokeRequest(task="known", options=_options(delay_seconds=1e12)),
     "options.delay_seconds"),
    ("Invoke", client_pb2.InvokeRequest(task="known", options=_options(max_attempts=10**6)),
     "options.max_attempts"),
    ("InvokeBatch", client_pb2.InvokeBatchRequest(task="known", payloads_json=["1", DEEP]),
     "payloads_json[1]"),
    ("PutSchedule", client_pb2.PutScheduleRequest(schedule=client_pb2.Schedule(
        task="known", name="n\x00", cron="* * * * *")), "schedule.name"),
    ("PutSchedule", client_pb2.PutScheduleRequest(schedule=client_pb2.Schedule(
        task="known", name="feb30", cron="0 0 30 2 *")), "schedule.cron"),
    ("PutSchedule", client_pb2.PutScheduleRequest(schedule=client_pb2.Schedule(
        task="known", name="n", cron="* * * * *", payload_json=DEEP)),
     "schedule.payload_json"),
    ("DeleteSchedule", client_pb2.DeleteScheduleRequest(task="known", name="\x00"), "name"),
    ("ListExecutions", client_pb2.ListExecutionsRequest(task="\x00"), "task"),
    ("ListExecutions", client_pb2.ListExecutionsRequest(queue="\x00"), "queue"),
    ("ListSchedules", client_pb2.ListSchedulesRequest(task="\x00"), "task"),
    ("WaitExecution", client_pb2.WaitExecutionRequest(execution_id="1",
                                                      timeout_seconds=1e300), "timeout_seconds"),
    ("GetExecution", client_pb2.GetExecutionRequest(execution_id="9" * 40), "execution_id"),
]


@pytest.mark.parametrize(("method", "request_", "field"), CLIENT_CASES,
                         ids=[f"{m}-{f}-{i}" for i, (m, _, f) in enumerate(CLIENT_CASES)])
def test_bad_client_input_is_invalid_argument_naming_the_field(
    coordinator, stub, db, method, request_, field
):
    worker = RawWorker(coordinator.coordinator.address, definition("known"))
    error = _refused(getattr(stub, method), request_)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert error.details().startswith(field + ":"), error.details()
    assert "Traceback" not in error.details() and "psycopg" not in error.details()
    assert _rows(db, "conductor_executions") == 0
    assert _rows(db, "conductor_schedules") == 0
    worker.close()


def test_unexpected_errors_are_internal_with_a_generic_message(coordinator, stub, caplog):
    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret internal detail")

    coordinator.coordinator.store.queue_stats = broken  # type: ignore[method-assign]
    error = _refused(stub.ListQueues, client_pb2.ListQueuesRequest())
    assert error.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in error.details()
    assert any("secret internal detail" in (r.exc_text or "") for r in caplog.records)


# -- 4/5. registration: refused before anything is written -----------------------------------


def _static(name: str) -> worker_pb2.TaskDefinition:
    task = definition("static")
    task.schedules.add(name=name, cron="* * * * *")
    return task


REGISTER_CASES = [
    (worker_pb2.Register(worker_id="w\x00", tasks=[definition("a")]), "register.worker_id"),
    (worker_pb2.Register(worker_id="w" * 1_000_000, tasks=[definition("a")]),
     "register.worker_id"),
    (worker_pb2.Register(worker_id="w", tasks=[definition("a\x00")]), "register.tasks[0].name"),
    (worker_pb2.Register(worker_id="w", tasks=[_static("s\x00")]),
     "register.tasks[0].schedules[0].name"),
    (worker_pb2.Register(worker_id="w", tasks=[definition("a"), definition("a")]),
     "register.tasks[1].name"),
    (worker_pb2.Register(worker_id="w", tasks=[definition("a", timezone="UTC\x00")]),
     "register.tasks[0].timezone"),
    (worker_pb2.Register(worker_id="w", tasks=[definition("a", max_attempts=10**9)]),
     "register.tasks[0].max_attempts"),
]


@pytest.mark.parametrize(("register", "field"), REGISTER_CASES,
                         ids=[f for _, f in REGISTER_CASES])
def test_refused_registration_writes_nothing(coordinator, db, register, field):
    error = _refused_register(coordinator.coordinator.address, register)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(field + ":"), error.details()
    assert len(error.details()) < 1100
    for table in ("conductor_tasks", "conductor_schedules", "conductor_workers"):
        assert _rows(db, table) == 0, table
    assert not coordinator.coordinator.dispatcher.sessions


# -- 6. echoed values are cut; message sizes are capped --------------------------------------


def test_errors_do_not_echo_huge_values(coordinator, stub):
    error = _refused(stub.Invoke, client_pb2.InvokeRequest(task="n" * 1_000_000))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(error.details()) < 200
    error = _refused(stub.Invoke, client_pb2.InvokeRequest(task="m" * 199))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert len(error.details()) < 200 and "199 characters" in error.details()
    error = _refused(stub.GetExecution, client_pb2.GetExecutionRequest(execution_id="x" * 10**6))
    assert len(error.details()) < 200


def test_messages_over_the_limit_are_refused_by_the_transport(start_coordinator):
    coordinator = start_coordinator(max_message_bytes=2 * 1024 * 1024)
    with grpc.insecure_channel(coordinator.coordinator.address,
                               options=[("grpc.max_send_message_length", -1)]) as channel:
        stub = client_pb2_grpc.ConductorServiceStub(channel)
        error = _refused(stub.Invoke, client_pb2.InvokeRequest(
            task="known", payload_json='"' + "x" * (3 * 1024 * 1024) + '"'))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # the server is still serving
        assert stub.ListQueues(client_pb2.ListQueuesRequest(), timeout=10) is not None


# -- 7. limits of step results, results, registrations ---------------------------------------


def test_limits_are_enforced_with_clear_errors(start_coordinator, db):
    coordinator = start_coordinator(max_step_result_bytes=100, max_result_bytes=200,
                                    max_register_tasks=3, max_name_length=20)
    address = coordinator.coordinator.address
    error = _refused_register(address, worker_pb2.Register(
        worker_id="w", tasks=[definition(f"t{i}") for i in range(4)]))
    assert error.details() == "register.tasks: at most 3 tasks, got 4"
    error = _refused_register(address, worker_pb2.Register(
        worker_id="w", tasks=[definition("a" * 21)]))
    assert error.details().startswith("register.tasks[0].name: at most 20 characters")
    worker = RawWorker(address, definition("lim"), worker_id="w")
    with Client(address) as client:
        eid = client.invoke("lim")
        lease = worker.next("leases").leases.items[0]
        acks = _saves(worker, eid, lease.lease_token, [("big", '"' + "x" * 100 + '"'),
                                                       ("small", '"' + "x" * 90 + '"')])
        assert acks["big"].status == worker_pb2.WRITE_STATUS_INVALID
        assert "limit is 100 bytes" in acks["big"].error
        assert acks["small"].status == worker_pb2.WRITE_STATUS_OK
        worker.complete(eid, lease.lease_token, '"' + "y" * 300 + '"')
        execution = client.get(eid)
    assert execution.state == "failed" and "limit is 200 bytes" in execution.error.message
    worker.close()


# -- 9. protocol gaps: malformed ids, empty outcomes, fencing by worker ----------------------


def test_outcomes_with_malformed_ids_get_stale_acks_and_empty_ones_are_refused(coordinator, db):
    address = coordinator.coordinator.address
    worker = RawWorker(address, definition("proto"), worker_id="w1")
    with Client(address) as client:
        eid = client.invoke("proto")
    lease = worker.next("leases").leases.items[0]
    worker.send(worker_pb2.WorkerMessage(outcomes=worker_pb2.Outcomes(items=[
        worker_pb2.Outcome(execution_id="not-an-id", lease_token=lease.lease_token,
                           completed=worker_pb2.Completed(result_json="1")),
        worker_pb2.Outcome(execution_id=eid, lease_token="not-a-token",
                           completed=worker_pb2.Completed(result_json="1")),
        worker_pb2.Outcome(execution_id=eid, lease_token=lease.lease_token),  # no result
    ])))
    acks: list[Any] = []
    while len(acks) < 3:
        acks += worker.next("outcome_acks").outcome_acks.items
    assert [(a.execution_id, a.lease_token, a.status) for a in acks] == [
        ("not-an-id", lease.lease_token, worker_pb2.WRITE_STATUS_STALE_LEASE),
        (eid, "not-a-token", worker_pb2.WRITE_STATUS_STALE_LEASE),
        (eid, lease.lease_token, worker_pb2.WRITE_STATUS_INVALID),
    ]
    row = db.execute("SELECT state::text, attempt FROM conductor_executions").fetchone()
    assert row == ("running", 1), "an outcome with no result is not a release"
    worker.close()


def test_writes_are_fenced_by_the_worker_holding_the_lease(coordinator, db):
    address = coordinator.coordinator.address
    holder = RawWorker(address, definition("fenced", capacity=1), worker_id="holder")
    with Client(address) as client:
        eid = client.invoke("fenced")
    lease = holder.next("leases").leases.items[0]
    thief = RawWorker(address, definition("fenced", capacity=1), worker_id="thief")
    # the thief knows the current token, but the lease is the holder's
    assert thief.save_step(eid, lease.lease_token, "s", "1").status == (
        worker_pb2.WRITE_STATUS_STALE_LEASE)
    assert thief.complete(eid, lease.lease_token, '"stolen"').status == (
        worker_pb2.WRITE_STATUS_STALE_LEASE)
    assert _rows(db, "conductor_steps") == 0
    expires = db.execute("SELECT lease_expires_at FROM conductor_executions").fetchone()
    dispatcher = coordinator.coordinator.dispatcher
    session = next(s for s in dispatcher.sessions.values() if s.worker_id == "thief")
    coordinator.run(dispatcher.heartbeat(session, [LeaseRef(int(eid), lease.lease_token)]))
    assert int(eid) not in session.inflight
    assert db.execute("SELECT lease_expires_at FROM conductor_executions").fetchone() == expires
    assert holder.complete(eid, lease.lease_token, '"mine"').status == (
        worker_pb2.WRITE_STATUS_OK)
    assert db.execute("SELECT result::text FROM conductor_executions").fetchone() == ('"mine"',)
    holder.close()
    thief.close()


# -- 10. WaitExecution answers within the call's deadline ------------------------------------


def test_wait_execution_answers_before_a_long_call_deadline(coordinator, stub):
    """gRPC rounds a deadline over 10 s up by up to 100 ms; the server used to wait that
    long and the caller got DEADLINE_EXCEEDED instead of the execution."""
    worker = RawWorker(coordinator.coordinator.address, definition("slow", capacity=1))
    eid = stub.Invoke(client_pb2.InvokeRequest(task="slow"), timeout=10).execution_id
    started = time.monotonic()
    execution = stub.WaitExecution(
        client_pb2.WaitExecutionRequest(execution_id=eid, timeout_seconds=10.5), timeout=10.5)
    assert execution.id == eid and time.monotonic() - started < 10.5
    worker.close()


# -- 11. slow and silent clients -------------------------------------------------------------


def test_a_stream_that_never_registers_is_closed(start_coordinator, caplog):
    coordinator = start_coordinator(register_timeout=0.5)

    def silent() -> Any:
        time.sleep(5)  # sends nothing for longer than the timeout, then gives up
        yield from ()

    with grpc.insecure_channel(coordinator.coordinator.address) as channel:
        stream = worker_pb2_grpc.WorkerServiceStub(channel).Connect(silent(), timeout=20)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as info:
            next(stream)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "no Register within 0.5 seconds" in info.value.details()
    assert time.monotonic() - started < 4
    assert not [r for r in caplog.records if r.exc_info], "an answered call logs no traceback"


def test_without_a_token_nothing_is_read_and_garbage_is_unauthenticated(start_coordinator):
    coordinator = start_coordinator(auth_token="s3cret")
    requests = coordinator.coordinator.metrics.grpc_requests

    def counted() -> float:
        return sum(sample.value for metric in requests.collect() for sample in metric.samples
                   if sample.name.endswith("_total")
                   and sample.labels.get("code") == "UNAUTHENTICATED")

    with grpc.insecure_channel(coordinator.coordinator.address) as channel:
        garbage = channel.unary_unary("/conductor.v1.ConductorService/Invoke",
                                      request_serializer=lambda b: b,
                                      response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as info:
            garbage(b"\xff\xfe\x00garbage" * 1000, timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        stub = client_pb2_grpc.ConductorServiceStub(channel)
        error = _refused(stub.Invoke, client_pb2.InvokeRequest(task="x" * 1000))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        error = _refused(stub.ListQueues, client_pb2.ListQueuesRequest())
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    # refused calls are still counted (once each call has finished on the server's side)
    wait_for(lambda: counted() == 3, timeout=10, what="three refused calls counted")
    assert counted() == 3
    with grpc.insecure_channel(coordinator.coordinator.address) as channel:
        good = client_pb2_grpc.ConductorServiceStub(channel)
        assert good.ListQueues(client_pb2.ListQueuesRequest(), timeout=10,
                               metadata=[("authorization", "Bearer s3cret")]) is not None


def test_garbage_with_a_token_is_not_unknown(coordinator):
    with grpc.insecure_channel(coordinator.coordinator.address) as channel:
        garbage = channel.unary_unary("/conductor.v1.ConductorService/Invoke",
                                      request_serializer=lambda b: b,
                                      response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as info:
            garbage(b"\xff\xfe\x00garbage", timeout=10)
    assert info.value.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT)
