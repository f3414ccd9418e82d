"""Pools on demand, a warm minimum, shared pools, the fork server, 100 task types.

Pool processes are forked by the worker's fork server (a child of the worker), so they are
the worker's grandchildren; they are counted from /proc."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import pytest

from conductor_worker import Client
from tests.acceptance.many_tasks import COUNT
from tests.conftest import wait_for

pytestmark = pytest.mark.acceptance

IDLE = "1"  # --pool-idle-timeout for these tests, in seconds


@pytest.fixture
def client(address: str) -> Any:
    with Client(address) as c:
        yield c


def children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                    found.add(int(entry.name))
    return found


def pool_processes(worker: int) -> set[int]:
    """The worker's grandchildren: the processes its fork server forked."""
    return {p for c in children(worker) for p in children(c)}


def settled_pool(worker: int, seconds: float = 0.5) -> set[int]:
    """The worker's pool processes once the same non-empty set has been listed for `seconds`.
    A process listed in the first moments after start-up can be gone at the next look (CI
    saw the first one listed vanish twice, and the warm process was another), so the warm
    process is the one that stays; a pool process that died instead would be logged, which
    the tests check at their end."""
    seen: dict[str, Any] = {"pids": None, "since": 0.0}

    def stable() -> set[int] | None:
        pids = pool_processes(worker)
        if pids != seen["pids"]:
            seen["pids"], seen["since"] = pids, time.monotonic()
            return None
        return pids if pids and time.monotonic() - seen["since"] >= seconds else None

    return set(wait_for(stable, what="the pool processes to settle"))


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def test_pools_start_on_demand_and_stop_when_idle(address, spawn_worker, client, tmp_path):
    worker = spawn_worker(address, "tests.acceptance.pool_tasks", "--pool-idle-timeout", IDLE)
    # registered, and no pool process yet: the warm task keeps exactly one
    (warm_pid,) = settled_pool(worker.pid)
    first = client.wait(client.invoke("pool-on-demand", 1), timeout=60)
    assert first.state == "succeeded"
    assert first.result["pid"] in pool_processes(worker.pid) | {None}
    assert first.result["pid"] != warm_pid
    # idle for IDLE seconds: the on-demand process stops, the warm one stays
    wait_for(lambda: pool_processes(worker.pid) == {warm_pid}, what="the idle pool to stop")
    # the next run starts a new process
    again = client.wait(client.invoke("pool-on-demand", 2), timeout=60)
    assert again.state == "succeeded" and again.result["pid"] != first.result["pid"]
    wait_for(lambda: pool_processes(worker.pid) == {warm_pid}, what="the idle pool to stop")
    assert worker.process.poll() is None
    assert "died" not in worker.output() and "Traceback" not in worker.output()


def test_a_pool_grows_to_processes_and_shrinks_to_min_processes(address, spawn_worker,
                                                                client, tmp_path):
    worker = spawn_worker(address, "tests.acceptance.pool_tasks", "--pool-idle-timeout", IDLE)
    (warm_pid,) = settled_pool(worker.pid)
    gate = tmp_path / "gate"
    held = [client.invoke("pool-warm", {"until": str(gate)}) for _ in range(3)]
    # two runs at once (processes=2): the warm process and one started for the second run
    wait_for(lambda: len(pool_processes(worker.pid)) == 2, what="a second process")
    gate.touch()
    results = [client.wait(e, timeout=60) for e in held]
    assert {r.state for r in results} == {"succeeded"}
    pids = {r.result["pid"] for r in results}
    assert len(pids) == 2 and warm_pid in pids  # never more than processes=2
    # back to min_processes=1: whichever process was idle the longest stopped
    wait_for(lambda: len(pool_processes(worker.pid)) == 1, what="back to one process")
    assert pool_processes(worker.pid) < pids


def test_shared_pool_runs_both_tasks_and_a_crash_fails_only_its_run(address, spawn_worker,
                                                                   client):
    worker = spawn_worker(address, "tests.acceptance.pool_tasks")
    echo = client.wait(client.invoke("shared-echo", "a"), timeout=60).result
    other = client.wait(client.invoke("shared-crash", "fine"), timeout=60).result
    assert echo["pid"] == other["pid"]  # one pool, one process (processes=1)
    crash = client.invoke("shared-crash", "crash", max_attempts=1)
    echoes = [client.invoke("shared-echo", i) for i in range(10)]
    failed = client.wait(crash, timeout=60)
    assert failed.state == "failed" and failed.error.type == "ProcessDied"
    assert "exited with code 7" in failed.error.message
    for i, execution_id in enumerate(echoes):
        done = client.wait(execution_id, timeout=60)
        assert (done.state, done.attempt, done.result["echo"]) == ("succeeded", 1, i)
    after = client.wait(client.invoke("shared-echo", "after"), timeout=60).result
    assert after["pid"] != echo["pid"]  # the crashed process was replaced
    assert worker.process.poll() is None


def test_pool_processes_are_forked_by_a_single_threaded_fork_server(address, spawn_worker,
                                                                    client):
    """gRPC and fork never mix: the worker (which runs gRPC) is never forked; its fork
    server has one thread, also when it forks."""
    worker = spawn_worker(address, "tests.acceptance.pool_tasks")
    ran = client.wait(client.invoke("pool-on-demand", 1), timeout=60).result
    assert ran["parent"] != worker.pid
    assert ran["parent"] in children(worker.pid)
    assert ran["parent_threads"] == 1  # seen from the pool process, after its fork
    assert threads(ran["parent"]) == 1
    assert threads(worker.pid) > 1  # the worker's gRPC and pipe threads


def test_a_fork_server_with_threads_forks_nothing_that_runs(address, spawn_worker, client):
    """A task module that starts a thread at import: the child forked from the threaded
    fork server runs nothing; the pool starts processes by spawn and the run succeeds."""
    worker = spawn_worker(address, "tests.acceptance.threaded_import_tasks")
    ran = client.wait(client.invoke("threaded-import", 1), timeout=60)
    assert ran.state == "succeeded" and ran.attempt == 1
    assert ran.result["parent"] == worker.pid  # spawned by the worker
    assert "starting this pool's processes by spawn" in worker.output()


def test_one_hundred_task_types_register_and_run(address, spawn_worker, client, db):
    worker = spawn_worker(address, "tests.acceptance.many_tasks", "--pool-idle-timeout", IDLE)
    row = db.execute("SELECT count(*) FROM conductor_tasks WHERE name LIKE 'many-%'").fetchone()
    assert row[0] == COUNT
    assert pool_processes(worker.pid) == set()  # nothing runs before work arrives
    ids = [client.invoke(f"many-{i:03d}", {"i": i}) for i in range(COUNT)]
    for i, execution_id in enumerate(ids):
        done = client.wait(execution_id, timeout=120)
        assert (done.state, done.result) == ("succeeded", {"task": i, "echo": {"i": i}})
    wait_for(lambda: pool_processes(worker.pid) == set(), timeout=60,
             what="every idle pool to stop")
    assert worker.process.poll() is None
