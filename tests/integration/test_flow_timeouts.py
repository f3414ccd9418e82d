"""Execution timeouts as the coordinator enforces them (whatever the worker does), and dead
letters, over hand-driven worker streams."""

from __future__ import annotations

import json

import grpc
import pytest

from conductor.v1 import client_pb2, client_pb2_grpc, common_pb2, worker_pb2
from conductor_worker import Client
from conductor_worker.errors import InvalidArgument
from tests.conftest import wait_for
from tests.integration.raw_worker import RawWorker, definition


def _row(db, execution_id: str) -> tuple:
    return db.execute(
        "SELECT state::text, attempt, error->>'type', deadline IS NOT NULL"
        " FROM conductor_executions WHERE id = %s", (int(execution_id),)
    ).fetchone()


def _renew(worker: RawWorker, lease: worker_pb2.Lease) -> worker_pb2.HeartbeatAck:
    """Heartbeat the lease (a worker that is alive, but whose run never ends)."""
    worker.send(worker_pb2.WorkerMessage(heartbeat=worker_pb2.Heartbeat(leases=[
        worker_pb2.LeaseRef(execution_id=lease.execution_id, lease_token=lease.lease_token)])))
    return worker.next("heartbeat_ack").heartbeat_ack


def _fail(worker: RawWorker, lease: worker_pb2.Lease, etype: str) -> worker_pb2.OutcomeAck:
    worker.send(worker_pb2.WorkerMessage(outcomes=worker_pb2.Outcomes(items=[
        worker_pb2.Outcome(execution_id=lease.execution_id, lease_token=lease.lease_token,
                           failed=worker_pb2.Failed(error=common_pb2.ErrorInfo(
                               type=etype, message="it broke"), retryable=True))])))
    return worker.next("outcome_acks").outcome_acks.items[0]


def test_a_stalled_worker_cannot_outlive_the_timeout(start_coordinator, db):
    """The worker keeps heartbeating but never ends the run: the coordinator fails the
    attempt as Timeout at timeout + grace, refuses the old lease's writes from then on, and
    retries per policy; an invoke's timeout overrides the task's."""
    coordinator = start_coordinator(timeout_grace=0.5)
    address = coordinator.coordinator.address
    worker = RawWorker(address, definition("stuck", timeout_seconds=1.0, max_attempts=2))
    with Client(address) as client:
        execution_id = client.invoke("stuck", {"n": 1})
        first = worker.next("leases").leases.items[0]
        assert first.timeout_seconds == 1.0
        assert worker.save_step(execution_id, first.lease_token, "early", "1").status == (
            worker_pb2.WRITE_STATUS_OK)
        wait_for(lambda: _row(db, execution_id)[2] == "Timeout", timeout=30,
                 what="the coordinator to time the attempt out")
        second = worker.next("leases", timeout=30).leases.items[0]
        assert second.attempt == 2 and second.lease_token != first.lease_token
        # the dead attempt's writes change nothing
        assert worker.save_step(execution_id, first.lease_token, "late", "2").status == (
            worker_pb2.WRITE_STATUS_STALE_LEASE)
        assert worker.complete(execution_id, first.lease_token, '"late"').status == (
            worker_pb2.WRITE_STATUS_STALE_LEASE)
        assert [r[0] for r in db.execute(
            "SELECT name FROM conductor_steps WHERE execution_id = %s",
            (int(execution_id),))] == ["early"]
        wait_for(lambda: _row(db, execution_id)[0] == "failed", timeout=30,
                 what="the second attempt to time out too")
        execution = client.get(execution_id)
        assert execution.error is not None and execution.error.type == "Timeout"
        assert [a.error.type for a in execution.attempts if a.error] == ["Timeout", "Timeout"]
        assert execution.timeout == 1.0

        overridden = client.invoke("stuck", timeout=30)
        lease = worker.next("leases", timeout=30).leases.items[0]
        assert (lease.execution_id, lease.timeout_seconds) == (overridden, 30.0)
        assert client.get(overridden).timeout == 30.0
        assert worker.complete(overridden, lease.lease_token, '"ok"').status == (
            worker_pb2.WRITE_STATUS_OK)
    worker.close()


def test_writes_after_the_deadline_are_refused_before_the_reaper_runs(start_coordinator, db):
    coordinator = start_coordinator(timeout_grace=0.2, reaper_interval=3600)
    address = coordinator.coordinator.address
    late_writer = definition("late-writer", timeout_seconds=0.5)
    # its retry waits (so it is still pending when looked at, not leased to this worker again)
    late_writer.retry.initial_backoff_seconds = late_writer.retry.max_backoff_seconds = 3600
    worker = RawWorker(address, late_writer)
    with Client(address) as client:
        execution_id = client.invoke("late-writer")
        lease = worker.next("leases").leases.items[0]
        wait_for(lambda: db.execute(
            "SELECT deadline < now() FROM conductor_executions WHERE id = %s",
            (int(execution_id),)).fetchone()[0], what="the deadline to pass")
        assert _row(db, execution_id)[:2] == ("running", 1)
        assert worker.save_step(execution_id, lease.lease_token, "s", "1").status == (
            worker_pb2.WRITE_STATUS_STALE_LEASE)
        assert worker.complete(execution_id, lease.lease_token, '"x"').status == (
            worker_pb2.WRITE_STATUS_STALE_LEASE)
        assert db.execute("SELECT count(*) FROM conductor_steps").fetchone()[0] == 0
        # the heartbeat no longer keeps it: the reaper fails it as Timeout
        assert coordinator.run(coordinator.coordinator.dispatcher.reap()) == 1
        assert _row(db, execution_id)[:3] == ("pending", 1, "Timeout")
        ack = _renew(worker, lease)
        assert [ref.execution_id for ref in ack.lost_leases] == [execution_id]
    worker.close()


def test_no_timeout_means_no_deadline(coordinator, db):
    address = coordinator.coordinator.address
    worker = RawWorker(address, definition("untimed"))
    with Client(address) as client:
        execution_id = client.invoke("untimed")
        lease = worker.next("leases").leases.items[0]
        assert lease.timeout_seconds == 0
        assert _row(db, execution_id)[3] is False
        assert client.get(execution_id).timeout is None
    worker.close()


def test_bad_timeouts_are_refused(start_coordinator, db):
    coordinator = start_coordinator()
    address = coordinator.coordinator.address
    for value in (-1.0, float("nan"), float("inf")):
        with pytest.raises(grpc.RpcError) as info:
            RawWorker(address, definition("timed", timeout_seconds=value))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details().startswith("register.tasks[0].timeout_seconds:")
    with pytest.raises(grpc.RpcError) as info:
        RawWorker(address, definition("named", on_failure="x" * 300))
    assert info.value.details().startswith("register.tasks[0].on_failure:")
    assert db.execute("SELECT count(*) FROM conductor_tasks").fetchone()[0] == 0

    worker = RawWorker(address, definition("timed"))
    with grpc.insecure_channel(address) as channel:
        stub = client_pb2_grpc.ConductorServiceStub(channel)
        for value in (-5.0, float("nan")):
            with pytest.raises(grpc.RpcError) as info:
                stub.Invoke(client_pb2.InvokeRequest(
                    task="timed", options=client_pb2.InvokeOptions(timeout_seconds=value)),
                    timeout=10)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert info.value.details().startswith("options.timeout_seconds:")
    with Client(address) as client:
        for value in ("soon", 0, -1):
            with pytest.raises(InvalidArgument, match=r"^timeout:"):
                client.invoke("timed", timeout=value)
    assert db.execute("SELECT count(*) FROM conductor_executions").fetchone()[0] == 0
    worker.close()


# -- dead letters -------------------------------------------------------------------------


def _dead_letters(db, of: str) -> list[tuple]:
    return db.execute(
        "SELECT id, task, payload FROM conductor_executions WHERE dead_letter_of = %s",
        (int(of),)).fetchall()


def test_final_failure_invokes_the_dead_letter_task_once(coordinator, db):
    address = coordinator.coordinator.address
    worker = RawWorker(address, definition("doomed", max_attempts=2, on_failure="grave"))
    # the dead letters' worker has a stream of its own (RawWorker.next skips other kinds)
    graves = RawWorker(address, definition("grave", max_attempts=1, on_failure="doomed"),
                       worker_id="graves")
    with Client(address) as client:
        execution_id = client.invoke("doomed", {"order": 7})
        first = worker.next("leases").leases.items[0]
        assert _fail(worker, first, "Boom").state == "pending"
        assert _dead_letters(db, execution_id) == []  # a retried attempt is no dead letter
        second = worker.next("leases", timeout=30).leases.items[0]
        assert second.attempt == 2
        assert _fail(worker, second, "Boom").state == "failed"
        # resent after a lost ack: acknowledged again, and still one dead letter
        assert _fail(worker, second, "Boom").status == worker_pb2.WRITE_STATUS_OK
        letters = _dead_letters(db, execution_id)
        assert len(letters) == 1
        letter_id, task, payload = letters[0]
        assert task == "grave"
        assert payload["execution_id"] == execution_id and payload["task"] == "doomed"
        assert payload["payload"] == {"order": 7} and payload["attempts"] == 2
        assert payload["error"]["type"] == "Boom" and payload["failed_at"]
        # the dead letter is leased like any execution, with the same payload
        lease = graves.next("leases", timeout=30).leases.items[0]
        assert (lease.task, lease.execution_id) == ("grave", str(letter_id))
        assert json.loads(lease.payload_json) == payload
        assert client.get(str(letter_id)).dead_letter_of == execution_id
        # the dead letter's own final failure is not dead-lettered again (no loop)
        assert _fail(graves, lease, "Boom").state == "failed"
        assert _dead_letters(db, str(letter_id)) == []
        assert db.execute("SELECT count(*) FROM conductor_executions").fetchone()[0] == 2
    worker.close()
    graves.close()


def test_reaped_and_cancelled_executions(start_coordinator, db):
    """A lost worker's last attempt is a final failure too; a cancelled execution is not."""
    coordinator = start_coordinator(lease_timeout=1.0)
    address = coordinator.coordinator.address
    tasks = (definition("fragile", max_attempts=1, on_failure="grave"), definition("grave"))
    worker = RawWorker(address, *tasks, worker_id="lost", heartbeat=False)
    with Client(address) as client:
        lost_id = client.invoke("fragile")
        worker.next("leases")
        worker.close()
        wait_for(lambda: len(_dead_letters(db, lost_id)) == 1, timeout=30,
                 what="the reaper's final failure to dead-letter")
        assert _dead_letters(db, lost_id)[0][2]["error"]["type"] == "WorkerLost"
        cancelled_id = client.invoke("fragile", delay=3600)
        client.cancel(cancelled_id)
        assert client.get(cancelled_id).state == "cancelled"
        assert _dead_letters(db, cancelled_id) == []


def test_a_lease_waiting_in_the_worker_does_not_use_up_its_time(start_coordinator, db):
    """A prefetched lease the worker announced as waiting has no deadline until the worker
    says it started; from then on, the timeout counts."""
    coordinator = start_coordinator(timeout_grace=0.2, reaper_interval=3600)
    address = coordinator.coordinator.address
    reap = coordinator.coordinator.dispatcher.reap
    queued = definition("queued", timeout_seconds=0.5)
    queued.retry.initial_backoff_seconds = queued.retry.max_backoff_seconds = 3600  # stays pending
    worker = RawWorker(address, queued)
    with Client(address) as client:
        execution_id = client.invoke("queued")
        lease = worker.next("leases").leases.items[0]
        ref = worker_pb2.LeaseRef(execution_id=execution_id, lease_token=lease.lease_token)
        granted = db.execute("SELECT deadline FROM conductor_executions WHERE id = %s",
                             (int(execution_id),)).fetchone()[0]
        worker.send(worker_pb2.WorkerMessage(run_states=worker_pb2.RunStates(waiting=[ref])))
        wait_for(lambda: _row(db, execution_id)[3] is False, what="the deadline suspended")
        wait_for(lambda: db.execute("SELECT now() > %s", (granted,)).fetchone()[0],
                 what="the grant-based deadline to pass")
        assert coordinator.run(reap()) == 0
        assert _row(db, execution_id)[:2] == ("running", 1)
        worker.send(worker_pb2.WorkerMessage(run_states=worker_pb2.RunStates(started=[ref])))
        wait_for(lambda: _row(db, execution_id)[3] is True, what="the deadline restarted")
        restarted = db.execute("SELECT deadline FROM conductor_executions WHERE id = %s",
                               (int(execution_id),)).fetchone()[0]
        assert restarted > granted
        wait_for(lambda: db.execute("SELECT now() > %s", (restarted,)).fetchone()[0],
                 what="the new deadline to pass")
        assert coordinator.run(reap()) == 1
        assert _row(db, execution_id)[:3] == ("pending", 1, "Timeout")
    worker.close()


def test_an_invoke_timeout_alone_also_waits_while_the_lease_waits(start_coordinator, db):
    """The task has no timeout; the execution's own does, and its waiting lease's deadline is
    suspended as well."""
    coordinator = start_coordinator(timeout_grace=0.2, reaper_interval=3600)
    address = coordinator.coordinator.address
    worker = RawWorker(address, definition("override-only"))
    with Client(address) as client:
        execution_id = client.invoke("override-only", timeout=0.5)
        lease = worker.next("leases").leases.items[0]
        assert lease.timeout_seconds == 0.5
        ref = worker_pb2.LeaseRef(execution_id=execution_id, lease_token=lease.lease_token)
        worker.send(worker_pb2.WorkerMessage(run_states=worker_pb2.RunStates(waiting=[ref])))
        wait_for(lambda: _row(db, execution_id)[3] is False, what="the deadline suspended")
    worker.close()
