"""Seeing what runs: the worker's lifecycle log lines, `invoke --wait` progress,
`executions watch` and `conductor logs`."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
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


def test_invoke_wait_shows_progress_on_a_terminal_and_is_quiet_when_piped(
    address, spawn_worker, tmp_path
):
    spawn_worker(address)
    payload = json.dumps({"effects": str(tmp_path / "fx"), "count": 6, "delay": 0.5})
    command = [*CLI, "invoke", "slow-steps", "--payload", payload, "--wait", "--timeout", "90",
               "--server", address]
    leader, follower = pty.openpty()  # standard error is a terminal
    try:
        shown = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=follower,
                               timeout=120, check=False)
        os.close(follower)
        terminal = _read_all(leader)
    finally:
        os.close(leader)
    assert shown.returncode == 0, terminal
    assert json.loads(shown.stdout)["result"] == 6
    assert re.search(r"slow-steps: running, [1-5] steps done, attempt 1/3", terminal), terminal
    piped = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120,
                           check=False)
    assert piped.returncode == 0, piped.stderr
    assert piped.stderr == ""
    assert json.loads(piped.stdout)["result"] == 6


def _read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other end is closed and everything was read
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def test_executions_watch_prints_each_change(address, spawn_worker, client, tmp_path):
    out = tmp_path / "watch.out"
    with out.open("w") as sink:
        watcher = subprocess.Popen(
            [*CLI, "executions", "watch", "--task", "always-fails", "--interval", "0.2",
             "--server", address], cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, text=True,
        )
        try:
            spawn_worker(address).stop()  # registers the tasks
            ignored = client.invoke("noop", None)  # another task: filtered out
            execution_id = client.invoke("always-fails", 7)
            wait_for(lambda: f"{execution_id}  always-fails  pending  attempt 0/2"
                     in out.read_text(), what="the pending line")
            spawn_worker(address)
            wait_for(lambda: f"{execution_id}  always-fails  failed  attempt 2/2  ValueError:"
                     " bad value 7" in out.read_text(), what="the final line")
        finally:
            watcher.send_signal(signal.SIGINT)
            assert watcher.wait(30) == 0
    text = out.read_text()
    assert f"  {ignored}  noop" not in text and "noop" not in text
    lines = [line for line in text.splitlines() if f"  {execution_id}  " in line]
    assert len(lines) == len(set(lines)), lines  # a line per change, not per round


def test_conductor_logs_prints_the_handler_lines_kept_bounded(start_coordinator, spawn_worker):
    address = start_coordinator(max_log_lines=3).coordinator.address
    spawn_worker(address)
    with Client(address) as conductor:
        few = conductor.invoke("log-lines", {"count": 2})
        many = conductor.invoke("log-lines", {"count": 10})
        for execution_id in (few, many):
            assert conductor.wait(execution_id, timeout=60).state == "succeeded"
        # the lines travel before the outcome but are stored beside it: wait, do not sleep
        wait_for(lambda: len(conductor.logs(few)) == 2, what="the lines of the first run")
        wait_for(lambda: len(conductor.logs(many)) == 3, what="the kept lines")
        kept = conductor.logs(many)
    assert [x.message for x in kept] == ["line 0 of 10", "line 1 of 10", "line 2 of 10"]
    assert {(x.attempt, x.level) for x in kept} == {(1, "INFO")}
    printed = subprocess.run([*CLI, "logs", few, "--server", address], cwd=ROOT,
                             capture_output=True, text=True, timeout=60, check=False)
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("attempt 1 INFO line 0 of 2"), lines
    assert lines[1].endswith("attempt 1 INFO line 1 of 2"), lines
    as_json = subprocess.run([*CLI, "logs", many, "--json", "--follow", "--server", address],
                             cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert [json.loads(x)["message"] for x in as_json.stdout.splitlines()] == [
        "line 0 of 10", "line 1 of 10", "line 2 of 10"]
    missing = subprocess.run([*CLI, "logs", "999999", "--server", address], cwd=ROOT,
                             capture_output=True, text=True, timeout=60, check=False)
    assert missing.returncode == 1 and "999999" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_json_logs_of_the_worker_and_its_pool_processes(address, client, tmp_path):
    log = tmp_path / "json-worker.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [*CLI, "--log-format", "json", "worker", "tests.acceptance.tasks", "--server",
             address], cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "connected to" in log.read_text(), what="the worker")
        execution_id = client.invoke("log-lines", {"count": 1})
        assert client.wait(execution_id, timeout=60).state == "succeeded"
        wait_for(lambda: '"succeeded"' in log.read_text(), what="the success line")
    finally:
        process.terminate()
        process.wait(30)
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    handler = next(e for e in entries if e["message"] == "line 0 of 1")
    assert (handler["execution_id"], handler["attempt"]) == (execution_id, 1)
    done = next(e for e in entries if e.get("event") == "succeeded")
    assert (done["execution_id"], done["attempt"], done["task"]) == (execution_id, 1,
                                                                     "log-lines")
