"""End to end through real worker processes: results, retries, steps and crashes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

import pytest

from conductor_worker import Client
from tests.conftest import ROOT, wait_for

pytestmark = pytest.mark.acceptance


@pytest.fixture
def client(address: str) -> Any:
    with Client(address) as c:
        yield c


def test_200_invocations_complete_and_read_back(address, spawn_worker, client, db):
    spawn_worker(address)
    ids = [client.invoke("noop", {"i": i}) for i in range(200)]
    assert len(set(ids)) == 200
    for i, execution_id in enumerate(ids):
        waited = client.wait(execution_id, timeout=60)
        assert (waited.state, waited.result, waited.attempt) == ("succeeded", {"i": i}, 1)
        got = client.get(execution_id)
        assert got.result == {"i": i} and got.state == "succeeded"
        assert got.finished_at is not None and got.started_at is not None
    count = db.execute("SELECT count(*) FROM conductor_executions WHERE state='succeeded'")
    assert count.fetchone()[0] == 200

    out = subprocess.run(
        [sys.executable, "-m", "conductor_worker", "invoke", "noop", "--payload", '{"cli": 1}',
         "--wait", "--timeout", "60", "--server", address],
        cwd=ROOT, capture_output=True, text=True, timeout=90, check=False,
    )
    assert out.returncode == 0, out.stderr
    printed = json.loads(out.stdout)
    assert printed["state"] == "succeeded" and printed["result"] == {"cli": 1}
    assert client.get(printed["id"]).result == {"cli": 1}


def test_async_handler_and_batch(address, spawn_worker, client):
    spawn_worker(address)
    ids = client.invoke_batch("async-echo", [1, "two", [3]])
    results = [client.wait(i, timeout=60).result for i in ids]
    assert results == [{"echo": 1, "attempt": 1}, {"echo": "two", "attempt": 1},
                       {"echo": [3], "attempt": 1}]


def test_failed_step_flush_closes_the_stream_and_the_worker_resends(coordinator, address,
                                                                   spawn_worker, client):
    """A database error while saving steps: the coordinator ends the worker's stream, the
    worker reconnects and resends the unacknowledged save, and the run goes on (same attempt)."""
    store = coordinator.coordinator.store
    real = store.save_steps
    failures: list[int] = []

    async def fails_once(writes: Any, *times: Any) -> Any:
        if not failures:
            failures.append(len(writes))
            raise ConnectionError("simulated database outage")
        return await real(writes, *times)

    store.save_steps = fails_once
    try:
        worker = spawn_worker(address)
        execution = client.wait(client.invoke("async-echo", "again"), timeout=60)
    finally:
        store.save_steps = real
    assert failures == [1]
    assert execution.state == "succeeded"
    assert execution.result == {"echo": "again", "attempt": 1}
    assert [(s.name, s.result) for s in client.steps(execution.id)] == [("echo", "again")]
    assert worker.output().count("connected to") == 2, worker.output()


def test_failed_step_attempt_retries_without_rerunning_steps(address, spawn_worker, client,
                                                             tmp_path):
    effects = tmp_path / "effects.txt"
    spawn_worker(address)
    execution = client.wait(
        client.invoke("fail-after-two-steps", {"effects": str(effects)}), timeout=60
    )
    assert execution.state == "succeeded"
    assert execution.attempt == 2
    assert execution.result == {"attempt": 2}
    assert effects.read_text().splitlines() == [
        "one", "two", "after-steps-attempt-1", "after-steps-attempt-2"
    ]


def test_final_failure_keeps_error_type_message_and_traceback(address, spawn_worker, client):
    spawn_worker(address)
    execution = client.wait(client.invoke("always-fails", {"x": 1}), timeout=60)
    assert execution.state == "failed"
    assert execution.attempt == 2
    assert execution.error is not None
    assert execution.error.type == "ValueError"
    assert execution.error.message == "bad value {'x': 1}"
    assert "Traceback" in execution.error.traceback and "always_fails" in execution.error.traceback


def _timed_runs(client, task: str, effects, count: int, workers: int) -> tuple[int, float]:
    """Run `count` one-second executions of `task` (after one warm-up run per worker);
    returns the most that ran at once and the makespan."""
    client.invoke_batch(task, [{"effects": str(effects), "seconds": 0.1}] * 2 * workers)
    wait_for(lambda: effects.exists() and len(effects.read_text().splitlines()) >= 2 * workers,
             what="the warm-up runs")
    effects.unlink()
    ids = client.invoke_batch(task, [{"effects": str(effects), "seconds": 1.0}] * count)
    for execution_id in ids:
        assert client.wait(execution_id, timeout=60).state == "succeeded"
    spans = [tuple(map(float, line.split())) for line in effects.read_text().splitlines()]
    assert len(spans) == count
    at_once = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    return at_once, max(e for _, e in spans) - min(s for s, _ in spans)


def test_a_task_without_prefetch_widens_its_lease_window(coordinator, spawn_worker, client):
    """`noop` sets only processes=2: the worker measures how fast it runs and asks for more
    leases at once (4 to begin with), so short tasks stream."""
    spawn_worker(coordinator.coordinator.address)
    ids = client.invoke_batch("noop", list(range(3000)))
    assert client.wait(ids[-1], timeout=60).state == "succeeded"
    sessions = list(coordinator.coordinator.dispatcher.sessions.values())
    assert len(sessions) == 1
    assert sessions[0].capacity["noop"] > 40


def test_runs_spread_over_idle_pool_processes(address, spawn_worker, client, tmp_path):
    """A run never waits behind a busy pool process while another process of the pool is
    idle: 6 one-second runs on 3 processes take two rounds, 3 at a time."""
    spawn_worker(address)
    at_once, makespan = _timed_runs(client, "three-processes", tmp_path / "e.txt", 6, 1)
    assert at_once == 3
    assert makespan < 2.8, f"6 runs of 1 s on 3 processes took {makespan:.1f} s"


def test_capped_work_is_shared_by_the_workers_with_room(address, spawn_worker, client, tmp_path):
    """A task capped at 4 on 2 workers x 3 processes: the 4 slots go 2 + 2 (by free room,
    not all to the first worker, where only 3 could run), so 8 runs take two rounds."""
    spawn_worker(address)
    spawn_worker(address)
    at_once, makespan = _timed_runs(client, "capped-four", tmp_path / "e.txt", 8, 2)
    assert at_once == 4
    assert makespan < 2.8, f"8 runs of 1 s, 4 at a time, took {makespan:.1f} s"


def test_work_is_spread_over_the_workers_of_every_coordinator(start_coordinator, spawn_worker,
                                                              tmp_path):
    """Two coordinators on one database, a worker of 2 processes on each, default lease
    windows (which would take 4 leases each): 4 one-second runs invoked through the first
    coordinator go 2 + 2, by idle processes, not all to the first worker to ask."""
    first, second = start_coordinator(), start_coordinator()
    spawn_worker(first.coordinator.address)
    spawn_worker(second.coordinator.address)
    with Client(first.coordinator.address) as client:
        at_once, makespan = _timed_runs(client, "two-processes", tmp_path / "e.txt", 4, 2)
    assert at_once == 4
    assert makespan < 1.8, f"4 runs of 1 s on 2 x 2 processes took {makespan:.1f} s"


def test_a_return_value_that_cannot_be_stored_fails_without_a_retry(
    address, spawn_worker, client
):
    spawn_worker(address)
    execution = client.wait(client.invoke("returns-a-set", {}), timeout=60)
    assert (execution.state, execution.attempt) == ("failed", 1)
    assert execution.error is not None and execution.error.type == "InvalidResult"
    assert "not JSON-serialisable" in execution.error.message


def test_sigkill_worker_mid_task_second_worker_finishes(start_coordinator, spawn_worker,
                                                        tmp_path, db):
    coordinator = start_coordinator(lease_timeout=2.0)
    address = coordinator.coordinator.address
    effects = tmp_path / "effects.txt"
    first = spawn_worker(address)
    with Client(address) as client:
        execution_id = client.invoke(
            "slow-steps", {"effects": str(effects), "count": 12, "delay": 0.15}
        )
        wait_for(lambda: effects.exists() and len(effects.read_text().splitlines()) >= 4,
                 what="four steps to run")
        os.kill(first.pid, signal.SIGKILL)
        first.process.wait(10)
        recorded = {
            row[0] for row in db.execute(
                "SELECT name FROM conductor_steps WHERE execution_id = %s", (int(execution_id),)
            )
        }
        assert len(recorded) >= 3
        spawn_worker(address)
        execution = client.wait(execution_id, timeout=60)
    assert execution.state == "succeeded" and execution.result == 12
    assert execution.attempt == 2
    lines = effects.read_text().splitlines()
    for name in recorded:
        assert lines.count(name) == 1, f"{name} ran again after it was recorded"
    assert {f"step-{i}" for i in range(12)} <= set(lines)


def test_sigkill_of_pool_child_fails_only_its_attempt(address, spawn_worker, client, tmp_path):
    worker = spawn_worker(address)
    pidfile = tmp_path / "child.pid"
    crash_id = client.invoke("crash-once", {"pidfile": str(pidfile)})
    child_pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text(),
                             what="the child to start"))
    assert child_pid != worker.pid
    os.kill(child_pid, signal.SIGKILL)
    execution = client.wait(crash_id, timeout=60)
    assert execution.state == "succeeded"
    assert execution.attempt == 2 and execution.result == {"attempt": 2}
    history = client.get(crash_id)
    assert history.error is None  # the successful attempt cleared it
    # the worker kept serving other tasks
    assert client.wait(client.invoke("noop", "still alive"), timeout=30).result == "still alive"
    assert worker.process.poll() is None


def test_child_exit_code_is_recorded_in_error(address, spawn_worker, client):
    spawn_worker(address)
    failed = client.wait(client.invoke("exit-hard", max_attempts=1), timeout=60)
    assert failed.state == "failed"
    assert failed.error.type == "ProcessDied"
    assert "exited with code 3" in failed.error.message
    retried = client.wait(client.invoke("exit-hard"), timeout=60)
    assert retried.state == "succeeded" and retried.attempt == 2


def test_signal_of_killed_child_is_in_the_error(address, spawn_worker, client, tmp_path):
    spawn_worker(address)
    pidfile = tmp_path / "child.pid"
    crash_id = client.invoke("crash-once", {"pidfile": str(pidfile)}, max_attempts=1)
    child_pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text(),
                             what="the child to start"))
    os.kill(child_pid, signal.SIGKILL)
    execution = client.wait(crash_id, timeout=60)
    assert execution.state == "failed"
    assert execution.error.type == "ProcessDied"
    assert "SIGKILL" in execution.error.message


THREADED = pytest.mark.parametrize("task_name", ["threaded", "threaded-async"])


@THREADED
def test_threads_run_executions_concurrently_in_one_process(address, spawn_worker, client,
                                                            tmp_path, task_name):
    """threads=4: four runs at once in one pool process, in threads (def) or as coroutines
    on the process's event loop (async def), each with its step recorded."""
    spawn_worker(address)
    effects = tmp_path / "meet.txt"
    ids = [client.invoke(task_name, {"effects": str(effects), "together": 4, "i": i})
           for i in range(4)]
    results = [client.wait(i, timeout=60) for i in ids]
    assert [r.state for r in results] == ["succeeded"] * 4, [r.error for r in results]
    assert len({r.result for r in results}) == 1, "all four ran in the one pool process"
    assert len(effects.read_text().splitlines()) == 4
    for i, execution_id in enumerate(ids):
        assert [(s.name, s.result) for s in client.steps(execution_id)] == [("after-meeting", i)]


@THREADED
def test_killed_threaded_process_fails_every_run_it_started(address, spawn_worker, client,
                                                            tmp_path, task_name):
    worker = spawn_worker(address)
    effects = tmp_path / "meet.txt"
    ids = [client.invoke(task_name, {"effects": str(effects), "together": 2, "i": i,
                                      "hang": True}) for i in range(2)]
    wait_for(lambda: all(len(client.steps(i)) == 1 for i in ids), what="both runs to meet")
    pid = int(effects.read_text().split()[1])
    os.kill(pid, signal.SIGKILL)
    failed = [client.wait(i, timeout=60) for i in ids]
    assert [f.state for f in failed] == ["failed", "failed"]
    assert all("SIGKILL" in f.error.message for f in failed)
    assert client.wait(client.invoke("noop", 5), timeout=30).result == 5
    assert worker.process.poll() is None
