"""Attempt history, rerun from a step and retry, through real worker processes."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from conductor_worker import Client, ExecutionNotFound, FailedPrecondition, InvalidArgument
from tests.conftest import wait_for

pytestmark = pytest.mark.acceptance
TASKS = "tests.acceptance.history_tasks"


@pytest.fixture
def client(address: str) -> Any:
    with Client(address) as c:
        yield c


def test_attempt_history_keeps_a_failure_a_release_a_lost_worker_and_the_success(
    start_coordinator, spawn_worker, tmp_path
):
    # long enough that a loaded machine's late heartbeat costs no attempt; the SIGKILL's
    # WorkerLost comes this much later
    coordinator = start_coordinator(lease_timeout=6.0)
    address = coordinator.coordinator.address
    ready = tmp_path / "ready"
    first = spawn_worker(address, TASKS)
    with Client(address) as client:
        execution_id = client.invoke("history-every-outcome", {"ready": str(ready)})
        wait_for(ready.exists, timeout=60, what="the second attempt to hang")
        running = client.attempts(execution_id)
        assert running[-1].outcome == "running" and running[-1].finished_at is None
        os.kill(first.pid, signal.SIGKILL)
        first.process.wait(10)
        spawn_worker(address, TASKS)
        execution = client.wait(execution_id, timeout=90)
        listed = client.attempts(execution_id)
    assert execution.state == "succeeded" and execution.result == {"attempt": 3}
    assert execution.attempts == tuple(listed)
    summary = [(a.number, a.attempt, a.outcome) for a in listed]
    assert summary == [(1, 1, "failed"), (2, 2, "released"), (3, 2, "failed"),
                       (4, 3, "succeeded")]
    failed, released, lost, succeeded = listed
    assert failed.error is not None and failed.error.type == "ValueError"
    assert failed.error.message == "first attempt fails" and "Traceback" in failed.error.traceback
    assert released.reason == "sleep" and released.error is None
    assert lost.error is not None and lost.error.type == "WorkerLost"
    assert succeeded.error is None
    assert failed.worker_id and failed.worker_id == released.worker_id == lost.worker_id
    assert succeeded.worker_id != lost.worker_id
    for a in listed:
        assert a.started_at is not None and a.finished_at is not None
        assert a.started_at <= a.finished_at


def test_rerun_from_a_step_runs_only_it_and_the_later_ones(address, spawn_worker, client,
                                                            tmp_path):
    spawn_worker(address, TASKS)
    effects = tmp_path / "effects.txt"
    original = client.wait(client.invoke("history-steps", {"effects": str(effects)}), timeout=60)
    assert original.state == "succeeded"
    rerun = client.rerun(original.id, from_step="b")
    assert rerun.rerun_of == original.id and rerun.id != original.id
    done = client.wait(rerun.id, timeout=60)
    assert done.state == "succeeded" and done.result == ["a", "b", "c"]
    assert effects.read_text().splitlines() == ["a", "b", "c", "b", "c"]
    assert [s.name for s in client.steps(rerun.id)] == ["a", "b", "c"]
    fresh = client.wait(client.rerun(original.id, payload={"effects": str(effects)}).id, 60)
    assert fresh.state == "succeeded"
    assert effects.read_text().splitlines()[5:] == ["a", "b", "c"]


def test_retry_of_a_failed_execution_keeps_its_steps_and_history(address, spawn_worker, client,
                                                                 tmp_path, db):
    spawn_worker(address, TASKS)
    effects = tmp_path / "effects.txt"
    failed = client.wait(
        client.invoke("history-steps", {"effects": str(effects), "fail": True}), timeout=60
    )
    assert failed.state == "failed"
    with pytest.raises(FailedPrecondition, match="only failed and cancelled"):
        client.retry(client.wait(client.invoke("history-noop", 1), timeout=60).id)
    # the payload is fixed in the database for this test: the retried run then succeeds
    db.execute("UPDATE conductor_executions SET payload = %s WHERE id = %s",
               (f'{{"effects": "{effects}"}}', int(failed.id)))
    client.retry(failed.id)
    done = client.wait(failed.id, timeout=60)
    assert done.state == "succeeded" and done.attempt == 1
    assert effects.read_text().splitlines() == ["a", "b", "c"]  # no step ran again
    assert [a.outcome for a in done.attempts] == ["failed", "succeeded"]


def test_rerun_and_retry_refuse_bad_input_and_write_nothing(address, spawn_worker, client,
                                                            tmp_path, db):
    spawn_worker(address, TASKS)
    effects = tmp_path / "effects.txt"
    done = client.wait(client.invoke("history-steps", {"effects": str(effects)}), timeout=60)
    (before,) = db.execute("SELECT count(*) FROM conductor_executions").fetchone()
    with pytest.raises(InvalidArgument, match=r"from_step: .* has no step named 'nope'"):
        client.rerun(done.id, from_step="nope")
    with pytest.raises(InvalidArgument, match="from_step: at most"):
        client.rerun(done.id, from_step="x" * 1000)
    with pytest.raises(InvalidArgument, match="payload_json: not valid JSON"):
        client._call(client._stub.RerunExecution, _rerun_request(done.id, "{bad"))
    with pytest.raises(InvalidArgument, match="execution_id"):
        client.rerun("not-an-id")
    with pytest.raises(ExecutionNotFound):
        client.rerun("99999999")
    with pytest.raises(ExecutionNotFound):
        client.retry("99999999")
    (after,) = db.execute("SELECT count(*) FROM conductor_executions").fetchone()
    assert after == before


def _rerun_request(execution_id: str, payload_json: str) -> Any:
    from conductor.v1 import client_pb2

    return client_pb2.RerunExecutionRequest(execution_id=execution_id, payload_json=payload_json)
