"""`conductor server` / `conductor dev` start-up and shutdown: a taken port is refused, and
an embedded PostgreSQL left behind by a killed dev stack is adopted and then stopped."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.test_cli import _read_address
from tests.conftest import ROOT, wait_for

pytestmark = pytest.mark.acceptance

CLI = [sys.executable, "-m", "conductor_worker"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([*CLI, *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen[str], sig: int = signal.SIGTERM) -> int:
    if process.poll() is None:
        process.send_signal(sig)
    try:
        return process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


@pytest.mark.parametrize("second", ["server", "dev"])
def test_a_second_coordinator_on_a_taken_port_fails_at_start(database_url, second):
    env = {**os.environ, "CONDUCTOR_DATABASE_URL": database_url}
    port = _free_port()
    first = _start("server", "--port", str(port), env=env)
    try:
        assert _read_address(first, r"listening on (\S+:\d+)") == f"127.0.0.1:{port}"
        args = ["dev", "examples.tasks"] if second == "dev" else ["server"]
        out = subprocess.run([*CLI, *args, "--port", str(port)], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 1, (out.stdout, out.stderr)
        assert out.stderr == f"conductor {second}: 127.0.0.1:{port}: address already in use\n"
        assert first.poll() is None, "the first coordinator keeps running"
    finally:
        assert _stop(first) == 0


@pytest.fixture
def data_dir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="conductor-dev-"))
    folder.chmod(0o755)  # the embedded server may run as its own user (when we are root)
    yield folder / "data"
    shutil.rmtree(folder, ignore_errors=True)


def _postgres_of(pgdata: Path) -> list[int]:
    """Pids of the PostgreSQL servers (postmasters) started on this data dir."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"/postgres") and str(pgdata).encode() in argv:
            found.append(int(entry.name))
    return found


def _dev(data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "CONDUCTOR_DATABASE_URL"}
    dev = subprocess.Popen(
        [*CLI, "dev", "examples.tasks", "--port", "0", "--data-dir", str(data_dir)],
        cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )
    wait_for(lambda: "coordinator on" in log.read_text() or dev.poll() is not None,
             timeout=120, what="the dev stack to start")
    assert dev.poll() is None, log.read_text()
    return dev


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads processes from /proc")
def test_an_orphaned_embedded_server_is_adopted_then_stopped(data_dir, tmp_path):
    pgdata = data_dir / "pgdata"
    first = _dev(data_dir, tmp_path / "first.log")
    try:
        orphan = _postgres_of(pgdata)
        assert len(orphan) == 1
    finally:
        first.kill()  # kill -9: no clean-up at all
        first.wait(10)
    assert _postgres_of(pgdata) == orphan, "the server outlives a killed dev stack"

    log = tmp_path / "second.log"
    second = _dev(data_dir, log)
    try:
        assert _postgres_of(pgdata) == orphan, "adopted: still exactly one server"
        assert f"left by stopped process(es) [{first.pid}]; adopting it" in log.read_text()
    finally:
        second.send_signal(signal.SIGHUP)  # the terminal closes
        code = second.wait(60)
    assert code == 0, log.read_text()
    wait_for(lambda: not _postgres_of(pgdata), timeout=30, what="the server to stop")
    assert not (pgdata / "postmaster.pid").exists()
