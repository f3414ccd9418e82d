"""Workflows through a real coordinator and real worker processes: children, fan-out,
cancellation cascade, signals, events (docs/workflows.md)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from conductor_worker import Client, FailedPrecondition
from tests.conftest import wait_for

pytestmark = pytest.mark.acceptance

TASKS = "tests.acceptance.workflow_tasks"


@pytest.fixture
def coordinator(start_coordinator):
    return start_coordinator(lease_timeout=6.0)


@pytest.fixture
def client(address: str) -> Any:
    with Client(address) as c:
        yield c


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_parent_child_grandchild_survive_sigkill_and_each_effect_happens_once(
    address, spawn_worker, client, tmp_path
):
    effects, hold = tmp_path / "effects", tmp_path / "hold"
    hold.write_text("wait")
    worker = spawn_worker(address, TASKS)
    parent_id = client.invoke("wf-parent", {"effects": str(effects), "hold": str(hold)})
    # The grandchild runs: the parent and the child wait, released (no lease).
    wait_for(lambda: "grandchild-started" in lines(effects), what="the grandchild to start")
    parent = client.get(parent_id)
    assert parent.state == "pending" and parent.waiting_for == "children:child"
    (child,) = client.list(parent_id=parent_id)
    assert child.task == "wf-child" and child.parent_id == parent_id
    assert client.get(child.id).waiting_for == "children:grandchild"
    # SIGKILL while the grandchild runs (and its ancestors wait).
    os.kill(worker.pid, signal.SIGKILL)
    worker.process.wait(10)
    hold.write_text("go")
    spawn_worker(address, TASKS)
    done = client.wait(parent_id, timeout=120)
    assert done.state == "succeeded", done
    assert done.result == {"child": {"grandchild": "leaf"}}
    seen = lines(effects)
    assert seen.count("child-effect") == 1
    assert seen.count("grandchild-effect") == 1
    assert seen.count("parent-after-child") == 1
    # code before the invoke ran again when the parent resumed, in the same attempt: a
    # release to wait counts none
    assert {line for line in seen if line.startswith("parent-start")} == {"parent-start-1"}
    assert client.get(parent_id).attempt == 1
