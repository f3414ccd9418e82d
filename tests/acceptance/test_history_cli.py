"""The history commands on real processes: executions show with attempts, rerun and retry,
bulk with --dry-run, tasks ls / rm / prune and queues without a live worker."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest

from conductor_worker import Client
from tests.conftest import ROOT, wait_for

pytestmark = pytest.mark.acceptance
CLI = [sys.executable, "-m", "conductor_worker"]
TASKS = "tests.acceptance.history_tasks"


def _run(address: str, *args: str, code: int = 0) -> str:
    out = subprocess.run([*CLI, *args, "--server", address], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=False)
    assert out.returncode == code, out.stdout + out.stderr
    return out.stdout + out.stderr


def test_show_rerun_retry_and_bulk_from_the_command_line(address, spawn_worker, tmp_path):
    spawn_worker(address, TASKS)
    effects = tmp_path / "effects.txt"
    with Client(address) as client:
        failed = client.wait(client.invoke("history-steps", {"effects": str(effects),
                                                             "fail": True}), timeout=60)
        shown = _run(address, "executions", "show", failed.id)
        assert "attempts (1):" in shown and "failed: RuntimeError: told to fail" in shown
        rerun = _run(address, "rerun", failed.id, "--from-step", "c",
                     "--payload", f'{{"effects": "{effects}"}}')
        assert f'"rerun_of": "{failed.id}"' in rerun
        assert "no step named 'zz'" in _run(address, "rerun", failed.id, "--from-step", "zz",
                                            code=1)
        assert '"state": "pending"' in _run(address, "retry", failed.id)
        client.wait(failed.id, timeout=60)  # fails again (the payload says so)
        assert _run(address, "bulk", "retry", "--task", "history-steps", "--dry-run") == (
            "1 matching execution(s)\n")
        delete = _run(address, "bulk", "delete", "--task", "history-steps")
        assert delete.splitlines() == ["2 matching execution(s)", "2 deleted"]
        assert "set all to confirm" in _run(address, "bulk", "delete", code=1)
    assert effects.read_text().splitlines() == ["a", "b", "c", "c"]


def test_tasks_ls_marks_stale_tasks_and_rm_removes_them(start_coordinator, spawn_worker, clock,
                                                       db):
    node = start_coordinator(task_stale_after=3600)
    address = node.coordinator.address
    worker = spawn_worker(address, TASKS)
    listed = _run(address, "tasks", "ls")
    assert "history-noop" in listed and "serving" in listed and "1h/2h/7d" in listed
    worker.stop()
    with Client(address) as client:
        client.invoke("history-steps", {"effects": "/dev/null"})

        def status(name: str) -> Any:
            return next(t for t in client.tasks() if t.name == name)

        wait_for(lambda: status("history-noop").workers == [], what="the worker to leave")
        assert not status("history-noop").stale
        assert "0 (no live worker)" in _run(address, "queues")
        clock.advance(timedelta(hours=2))
        assert status("history-noop").stale
        assert "stale" in _run(address, "tasks", "ls")
        pruned = _run(address, "tasks", "prune", code=1)  # history-steps has an execution
        assert "history-noop: removed" in pruned
        assert "history-steps: not removed: name: executions of task" in pruned
        names = {t.name for t in client.tasks()}
    assert "history-noop" not in names and "history-steps" in names
    assert db.execute("SELECT count(*) FROM conductor_tasks WHERE name = 'history-noop'"
                      ).fetchone()[0] == 0
