"""`conductor status` against a running coordinator and against none."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.conftest import ROOT

pytestmark = pytest.mark.acceptance

CLI = [sys.executable, "-m", "conductor_cli"]


def status(address: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "status", "--server", address, *extra], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)


def test_status_names_the_database_workers_and_unserved_tasks(address, spawn_worker,
                                                              database_url):
    parts = conninfo_to_dict(database_url)  # 127.0.0.1:5432, or an embedded server's socket
    place = f"{parts.get('host') or 'localhost'}:{parts.get('port') or '5432'}/"
    spawn_worker(address).stop()  # registers the tasks, then leaves: nobody serves them
    alone = status(address)
    assert alone.returncode == 0, alone.stderr
    lines = alone.stdout.splitlines()
    assert lines[0].startswith(f"coordinator  {address}: reachable (conductor ")
    assert lines[1].startswith(f"database     {place}") and lines[1].endswith(": ok")
    assert lines[2] == "data dir     - (external database)"
    assert lines[3] == "workers      0 connected"
    assert "not served by any connected worker:" in lines[4]
    assert "  noop (0 ready, 0 waiting)" in lines

    worker = spawn_worker(address)
    served = status(address, "--json")
    assert served.returncode == 0, served.stderr
    found = json.loads(served.stdout)
    assert found["reachable"] is True and found["database_ok"] is True
    assert [w["pid"] for w in found["workers"]] == [worker.pid]
    assert found["unserved_tasks"] == []


def test_status_without_a_coordinator_fails_fast():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    found = status(f"127.0.0.1:{port}")
    took = time.monotonic() - started
    assert found.returncode == 1
    assert found.stdout.startswith(f"coordinator  127.0.0.1:{port}: unreachable (UNAVAILABLE")
    assert "Traceback" not in found.stderr
    assert took < 25  # the default wait is 3 s, not the client's 30 s (loose: a loaded machine)
    as_json = json.loads(status(f"127.0.0.1:{port}", "--json", "--timeout", "0.5").stdout)
    assert as_json["reachable"] is False
