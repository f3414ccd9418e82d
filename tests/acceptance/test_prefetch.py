"""Prefetched leases: a worker that dies holding leases it never started costs them no
attempt; the run it had started counts one (error: worker lost)."""

from __future__ import annotations

import contextlib
import os
import signal

import pytest

from conductor_worker import Client
from tests.conftest import wait_for

pytestmark = pytest.mark.acceptance


def test_sigkill_worker_holding_prefetched_leases(start_coordinator, spawn_worker, tmp_path,
                                                  db):
    coordinator = start_coordinator(lease_timeout=2.0)
    address = coordinator.coordinator.address
    dispatcher = coordinator.coordinator.dispatcher
    assert dispatcher is not None
    started, release = tmp_path / "started.txt", tmp_path / "release"
    payload = {"started": str(started), "release": str(release)}
    first = spawn_worker(address)
    with Client(address) as client:
        ids = client.invoke_batch("prefetch-hold", [payload] * 5)
        wait_for(lambda: started.exists() and started.read_text().strip(),
                 what="the first run to start")
        running_id, child_pid = started.read_text().split()
        # one lease runs, four wait in the pool; the worker says so (after ANNOUNCE_EVERY)
        wait_for(lambda: sum(len(s.waiting) for s in list(dispatcher.sessions.values())) == 4,
                 what="the coordinator to hear that four leases wait")
        os.kill(first.pid, signal.SIGKILL)
        first.process.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(child_pid), signal.SIGKILL)

        def states() -> dict[str, tuple[str, int, str | None]]:
            rows = db.execute(
                "SELECT id::text, state::text, attempt, error->>'type'"
                " FROM conductor_executions WHERE id = ANY(%s)", ([int(i) for i in ids],))
            return {row[0]: (row[1], row[2], row[3]) for row in rows}

        # the leases expire (2 s): the started run counts an attempt, the others none
        wait_for(lambda: all(s[0] == "pending" for s in states().values()), timeout=60,
                 what="every lease to expire and return")
        after = states()
        assert after.pop(running_id) == ("pending", 1, "WorkerLost")
        assert sorted(after.values()) == [("pending", 0, None)] * 4
        returned = db.execute(
            "SELECT count(*) FROM conductor_executions WHERE unstarted_returns = 1").fetchone()
        assert returned is not None and returned[0] == 4

        release.touch()
        spawn_worker(address)
        finished = {i: client.wait(i, timeout=60) for i in ids}
    assert all(e.state == "succeeded" for e in finished.values())
    assert finished[running_id].attempt == 2
    assert sorted(e.attempt for i, e in finished.items() if i != running_id) == [1] * 4
