"""Execution timeouts that stop real pool processes, and dead letters, on real workers."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from conductor_worker import Client
from tests.conftest import ROOT, wait_for

pytestmark = pytest.mark.acceptance

MODULE = "tests.acceptance.flow_time_tasks"
#: the issue's promise: a timed-out run is over within its timeout plus this
STOP_WITHIN = 2.0


@pytest.fixture
def client(address: str) -> Any:
    with Client(address) as c:
        yield c


@pytest.mark.parametrize(
    ("task", "block"),
    [("spin", False), ("sleep-forever", False), ("async-forever", False),
     ("async-forever", True)],
)
def test_a_handler_that_never_ends_is_stopped_and_retried(
    address, spawn_worker, client, task, block, tmp_path
):
    worker = spawn_worker(address, MODULE)
    started = tmp_path / "started"
    execution = client.wait(
        client.invoke(task, {"started": str(started), "block": block}), timeout=90)
    assert execution.state == "failed", execution
    assert execution.error is not None and execution.error.type == "Timeout"
    assert "pool process" in execution.error.message
    runs = [a for a in execution.attempts if a.outcome == "failed"]
    assert [a.attempt for a in runs] == [1, 2]  # retried per the task's policy
    handler_starts = [float(line) for line in started.read_text().split()]
    assert len(handler_starts) == 2
    for run, began in zip(runs, handler_starts, strict=True):
        assert run.error is not None and run.error.type == "Timeout"
        assert run.started_at is not None and run.finished_at is not None
        # not before the timeout: it counts from the run's start, after the lease's grant
        assert (run.finished_at - run.started_at).total_seconds() >= 1.0
        # over within the promise, from the handler's start (its first line) to the attempt
        # recorded as failed by the coordinator (not from the grant: a lease may take a
        # while to reach its pool process on a loaded machine)
        took = run.finished_at.timestamp() - began
        assert took <= 1.0 + STOP_WITHIN, (took, worker.output())
    # the worker lives on and serves other tasks (a new pool process replaced the old)
    assert worker.process.poll() is None
    assert client.wait(client.invoke("quick", {"still": "here"}), timeout=60).result == {
        "still": "here"}


def test_the_other_run_of_a_stopped_process_is_released_without_an_attempt(
    address, spawn_worker, client
):
    spawn_worker(address, MODULE)
    bystander = client.invoke("threaded-timeouts", {"steps": 4})
    wait_for(lambda: client.get(bystander).state == "running", what="the bystander to start")
    hung = client.invoke("threaded-timeouts", {"hang": True}, timeout=1)
    done = client.wait(bystander, timeout=90)
    assert (done.state, done.result, done.attempt) == ("succeeded", "done", 1), done
    reasons = [(a.outcome, a.reason) for a in done.attempts]
    assert ("released", "process_stopped") in reasons, reasons
    failed = client.wait(hung, timeout=90)
    assert failed.state == "failed" and failed.error is not None
    assert failed.error.type == "Timeout"
    assert failed.timeout == 1.0


def test_a_failed_execution_is_dead_lettered_once(address, spawn_worker, client, db):
    spawn_worker(address, MODULE)
    execution_id = client.invoke("doomed", {"order": 42})
    assert client.wait(execution_id, timeout=60).state == "failed"
    letters = wait_for(lambda: db.execute(
        "SELECT id::text FROM conductor_executions WHERE dead_letter_of = %s",
        (int(execution_id),)).fetchall(), what="the dead letter")
    assert len(letters) == 1
    letter = client.wait(letters[0][0], timeout=60)
    assert (letter.task, letter.state, letter.dead_letter_of) == (
        "bury", "succeeded", execution_id)
    assert letter.result == {"buried": execution_id, "error": "RuntimeError"}
    assert letter.payload["payload"] == {"order": 42} and letter.payload["attempts"] == 2


# -- batch handlers -----------------------------------------------------------------------


def test_batches_fill_up_to_their_size_and_each_item_has_its_own_result(
    address, spawn_worker, client
):
    spawn_worker(address, MODULE)
    ids = client.invoke_batch("batch-double", [{"x": i} for i in range(25)])
    done = [client.wait(i, timeout=60) for i in ids]
    assert [(e.state, e.result["x"], e.result["id"], e.attempt) for e in done] == [
        ("succeeded", 2 * i, ids[i], 1) for i in range(25)]
    sizes = [e.result["size"] for e in done]
    assert max(sizes) == 10 and all(1 <= s <= 10 for s in sizes), sizes
    # a lone lease does not wait for company longer than batch_wait
    alone = client.wait(client.invoke("batch-double", {"x": 100}), timeout=30)
    assert alone.result["size"] == 1 and alone.result["x"] == 200


def test_a_partial_failure_retries_only_the_failed_items(
    address, spawn_worker, client, tmp_path
):
    spawn_worker(address, MODULE)
    payloads = [{"x": 1}, {"x": 2, "flaky": str(tmp_path / "flaky")}, {"x": 3, "never": True},
                {"x": 4}]
    ids = client.invoke_batch("batch-double", payloads)
    done = [client.wait(i, timeout=60) for i in ids]
    assert [(e.state, e.attempt) for e in done] == [
        ("succeeded", 1), ("succeeded", 2), ("failed", 1), ("succeeded", 1)], done
    assert done[1].result["x"] == 4
    assert [a.error.type for a in done[1].attempts if a.error] == ["RuntimeError"]
    assert done[2].error is not None and done[2].error.type == "NonRetryableError"
    assert done[2].error.message == "never works"


def test_the_cli_overrides_the_execution_timeout(address, spawn_worker, client):
    spawn_worker(address, MODULE)
    out = subprocess.run(
        [sys.executable, "-m", "conductor_cli", "invoke", "quick", "--payload", "1",
         "--execution-timeout", "7.5", "--server", address],
        capture_output=True, text=True, timeout=60, check=True, cwd=ROOT)
    execution = client.wait(out.stdout.strip(), timeout=60)
    assert (execution.state, execution.timeout) == ("succeeded", 7.5)


def test_a_batch_past_its_timeout_fails_every_item(address, spawn_worker, client):
    worker = spawn_worker(address, MODULE)
    ids = client.invoke_batch("batch-hang", [1, 2, 3])
    done = [client.wait(i, timeout=60) for i in ids]
    assert [(e.state, e.error.type if e.error else None) for e in done] == [
        ("failed", "Timeout")] * 3
    assert worker.process.poll() is None
    assert client.wait(client.invoke("quick", 5), timeout=60).result == 5
