"""Seeing what runs: the worker's lifecycle log lines, `invoke --wait` progress,
`executions watch` and `conductor logs`."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from typing import Any

import pytest

from conductor_worker import Client
from tests.conftest import ROOT, wait_for

pytestmark = pytest.mark.acceptance

CLI = [sys.executable, "-m", "conductor_cli"]


@pytest.fixture
def client(address: str) -> Any:
    with Client(address) as c:
        yield c


def test_worker_logs_each_event_of_an_execution_with_its_id_and_attempt(
    address, spawn_worker, client
):
    worker = spawn_worker(address)
    with tempfile.NamedTemporaryFile("r") as effects:
        execution_id = client.invoke("fail-after-two-steps", {"effects": effects.name})
        assert client.wait(execution_id, timeout=60).state == "succeeded"
    logged = client.invoke("log-lines", {"count": 2})
    assert client.wait(logged, timeout=60).state == "succeeded"
    name = f"execution {execution_id} attempt"
    wait_for(lambda: f"{name} 2/3 (fail-after-two-steps): succeeded" in worker.output(),
             what="the success line")
    lines = [line for line in worker.output().splitlines() if name in line]
    events = [re.sub(r".*\(fail-after-two-steps\): ", "", line) for line in lines]
    assert events[0] == "started", lines
    assert re.fullmatch(r"failed after [\d.]+s, 2 steps: RuntimeError: boom after two steps;"
                        r" retry in [\d.]+s", events[1]), lines
    assert events[2] == "started, 2 steps recorded earlier", lines
    assert re.fullmatch(r"succeeded in [\d.]+s, 2 steps", events[3]), lines
    assert f"{name} 1/3" in lines[1] and f"{name} 2/3" in lines[2]
    # ctx.logger lines name the execution and attempt too
    wait_for(lambda: f"[execution {logged} attempt 1] line 1 of 2" in worker.output(),
             what="the handler's log line")
    assert f"[execution {logged} attempt 1] line 0 of 2" in worker.output()


def test_a_final_failure_says_no_retry_is_left(address, spawn_worker, client):
    worker = spawn_worker(address)
    execution_id = client.invoke("always-fails", None)
    assert client.wait(execution_id, timeout=60).state == "failed"
    wait_for(lambda: "no retry left" in worker.output(), what="the final failure line")
    line = next(x for x in worker.output().splitlines() if "no retry left" in x)
    assert f"execution {execution_id} attempt " in line and " ERROR " in line
