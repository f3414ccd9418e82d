"""What every scenario needs: PostgreSQL, scratch databases, a coordinator process, worker
processes, registration and drain checks, RSS, percentiles and result lines."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from conductor_server.database import EmbeddedPostgres
from conductor_worker import Client

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
ACTIVE = ("pending", "running")


class BenchError(RuntimeError):
    """A scenario could not run (a process died, a wait timed out)."""


# -- results -----------------------------------------------------------------------------


@dataclass
class Result:
    """One scenario's figures: one line of text, or one JSON object."""

    id: str
    title: str
    summary: str
    figures: dict[str, Any]
    target: str | None = None
    met: bool | None = None
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        text = f"{self.id} {self.title}: {self.summary}"
        if self.target is not None:
            verdict = "met" if self.met else "NOT met"
            text += f"  target {self.target}: {verdict}"
        if self.notes:
            text += f"  [{'; '.join(self.notes)}]"
        return text

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "summary": self.summary,
            "target": self.target,
            "met": self.met,
            **self.figures,
            "notes": self.notes,
        }


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def span_seconds(first: datetime | None, last: datetime | None) -> float:
    if first is None or last is None:
        raise BenchError("no execution started or finished")
    return max((last - first).total_seconds(), 1e-9)


# -- PostgreSQL --------------------------------------------------------------------------


class PostgresServer:
    """The server the scenarios create their scratch databases on: the given URL, or an
    embedded PostgreSQL in a temporary folder (started once per run, removed after)."""

    def __init__(self, url: str | None) -> None:
        self.url = url
        self.embedded: EmbeddedPostgres | None = None
        self._tmp: str | None = None
        self.description = "given by URL" if url else "embedded"

    def __enter__(self) -> PostgresServer:
        if self.url is None:
            self._tmp = tempfile.mkdtemp(prefix="conductor-bench-pg-")
            self.embedded = EmbeddedPostgres(Path(self._tmp))
            self.url = self.embedded.start()
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            self.version = row[0] if row else "?"
            row = conn.execute("SELECT pg_backend_pid()").fetchone()
        #: the postmaster, when the server runs on this machine (for CPU accounting)
        self.postmaster: int | None = None
        with contextlib.suppress(OSError, IndexError, ValueError):
            self.postmaster = int(_stat_fields(int(row[0]))[1]) if row else None
        self.description += f" PostgreSQL {self.version}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.embedded is not None:
            self.embedded.stop()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    @contextlib.contextmanager
    def scratch(self, label: str) -> Iterator[str]:
        """A new empty database for one scenario, dropped afterwards; yields its URL."""
        assert self.url is not None
        name = f"conductor_bench_{label}_{uuid.uuid4().hex[:8]}".lower()
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        try:
            yield make_conninfo(self.url, dbname=name)
        finally:
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


# -- processes ---------------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CONDUCTOR_SERVER", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def stop_process(proc: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    """SIGTERM (a graceful stop), then SIGKILL if it is still there after `timeout`."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in KiB, from /proc/<pid>/status."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


class Stack:
    """One scenario's world: a scratch database, a coordinator process, worker processes,
    a client and a database connection for checks. Everything stops on exit."""

    def __init__(
        self, server: PostgresServer, label: str, logs: Path,
        coordinator_args: Sequence[str] = (),
    ) -> None:
        self.server = server
        self.label = label
        self.logs = logs
        #: extra `conductor server` flags (S9: retention)
        self.coordinator_args = list(coordinator_args)
        self.url = ""
        self.address = ""
        self.coordinator: subprocess.Popen[str] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self._exit = contextlib.ExitStack()
        self._client: Client | None = None
        self._db: psycopg.Connection[Any] | None = None

    @property
    def client(self) -> Client:
        assert self._client is not None
        return self._client

    @property
    def db(self) -> psycopg.Connection[Any]:
        assert self._db is not None
        return self._db

    def __enter__(self) -> Stack:
        try:
            self.url = self._exit.enter_context(self.server.scratch(self.label))
            self._start_coordinator()
            self._client = self._exit.enter_context(Client(self.address, timeout=120))
            self._db = self._exit.enter_context(psycopg.connect(self.url, autocommit=True))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            for proc in self.workers:
                stop_process(proc)
            if self.coordinator is not None:
                stop_process(self.coordinator)
        finally:
            self._exit.close()

    def _log(self, name: str) -> Any:
        return open(self.logs / f"{self.label}-{name}.log", "ab")

    def _start_coordinator(self) -> None:
        cmd = [
            PYTHON, "-m", "conductor_worker", "--log-level", "WARNING",
            "server", "--port", "0", "--database-url", self.url, *self.coordinator_args,
        ]
        with self._log("coordinator") as log:
            proc = subprocess.Popen(
                cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=log, text=True
            )
        self.coordinator = proc
        found = threading.Event()

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                if "listening on" in line and not found.is_set():
                    self.address = line.rsplit(" ", 1)[-1].strip()
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(60) or proc.poll() is not None:
            raise BenchError(f"coordinator did not start; see {self.logs}")

    @property
    def coordinator_pid(self) -> int:
        assert self.coordinator is not None
        return self.coordinator.pid

    def cpu_meter(self, worker: int) -> CpuMeter:
        return CpuMeter(self.coordinator_pid, worker, self.server.postmaster)

    def start_worker(self, *tasks: str) -> subprocess.Popen[bytes]:
        cmd = [PYTHON, "-m", "bench.worker", "--server", self.address, *tasks]
        with self._log("worker") as log:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=log, stderr=log)
        self.workers.append(proc)
        return proc

    def start_module_worker(self, module: str, *flags: str,
                            env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """`conductor worker MODULE` (every task of the module), logging warnings only."""
        cmd = [PYTHON, "-m", "conductor_worker", "--log-level", "WARNING", "worker", module,
               "--server", self.address, *flags]
        with self._log("worker") as log:
            proc = subprocess.Popen(cmd, cwd=ROOT, env={**_env(), **(env or {})},
                                    stdout=log, stderr=log)
        self.workers.append(proc)
        return proc

    def stop_worker(self, proc: subprocess.Popen[bytes]) -> None:
        stop_process(proc)
        self.workers.remove(proc)

    def check_alive(self) -> None:
        procs = [("coordinator", self.coordinator), *(("worker", w) for w in self.workers)]
        for name, proc in procs:
            if proc is not None and proc.poll() is not None:
                raise BenchError(f"{name} exited with {proc.returncode}; see {self.logs}")

    # -- waiting --------------------------------------------------------------------------

    def wait_registered(self, *tasks: str, timeout: float = 60.0) -> None:
        """Until a worker has registered every one of the tasks (rows in conductor_tasks)."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(psycopg.errors.UndefinedTable):
                rows = self.db.execute(
                    "SELECT count(*) FROM conductor_tasks WHERE name = ANY(%s)", (list(tasks),)
                ).fetchone()
                if rows and rows[0] == len(tasks):
                    return
            self.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(f"tasks {tasks} not registered after {timeout}s")
            time.sleep(0.05)

    def wait_idle(self, task: str, timeout: float = 120.0, poll: float = 0.05) -> None:
        """Until no execution of `task` is pending or running."""
        deadline = time.monotonic() + timeout
        while True:
            row = self.db.execute(
                "SELECT count(*) FROM conductor_executions"
                " WHERE task = %s AND state = ANY(%s::conductor_execution_state[])",
                (task, list(ACTIVE)),
            ).fetchone()
            if row and row[0] == 0:
                return
            self.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(f"{task}: {row[0] if row else '?'} still active after {timeout}s")
            time.sleep(poll)

    def count(self, task: str, state: str) -> int:
        row = self.db.execute(
            "SELECT count(*) FROM conductor_executions WHERE task = %s AND state = %s",
            (task, state),
        ).fetchone()
        return int(row[0]) if row else 0

    def warm_up(self, task: str, n: int) -> None:
        """Run `n` executions so that pool processes are up and every path is warm."""
        self.client.invoke_batch(task, list(range(n)))
        self.wait_idle(task, timeout=120)

    def span(self, first_id: int, last_id: int) -> tuple[int, datetime | None, datetime | None]:
        """(succeeded, first lease, last completion) of the executions with ids in range."""
        row = self.db.execute(
            "SELECT count(*) FILTER (WHERE state = 'succeeded'), min(started_at),"
            " max(finished_at) FROM conductor_executions WHERE id BETWEEN %s AND %s",
            (first_id, last_id),
        ).fetchone()
        assert row is not None
        return int(row[0]), row[1], row[2]


# -- CPU accounting ----------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (0 if it is gone)."""
    try:
        fields = _stat_fields(pid)
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def descendants(pid: int) -> list[int]:
    """Children, grandchildren and so on (pool processes are the fork server's children)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parents[int(entry.name)] = int(_stat_fields(int(entry.name))[1])
    found: list[int] = []
    layer = {pid}
    while layer:
        layer = {p for p, parent in parents.items() if parent in layer}
        found += sorted(layer)
    return found


def memory_kib(pids: Sequence[int]) -> tuple[int, int]:
    """(RSS, PSS) summed over processes, in KiB, from /proc/<pid>/smaps_rollup. PSS counts
    a page shared by n processes as 1/n in each, so the sum is what they use together."""
    rss = pss = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                key, _, rest = line.partition(":")
                if key == "Rss":
                    rss += int(rest.split()[0])
                elif key == "Pss":
                    pss += int(rest.split()[0])
    return rss, pss


def child_pids(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int(_stat_fields(int(entry.name))[1]) == pid:
                    found.append(int(entry.name))
    return found


def machine_cpu_seconds() -> float:
    """CPU time spent by everything on the machine (all cores, not idle or iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq + steal) / _TICK


def busy_cores(seconds: float = 1.0) -> float:
    """How many cores the machine keeps busy now (averaged over `seconds`)."""
    before = machine_cpu_seconds()
    time.sleep(seconds)
    return (machine_cpu_seconds() - before) / seconds


class CpuMeter:
    """CPU used over a block by the coordinator, the worker's main process, its pool
    processes, PostgreSQL (the postmaster and its backends, when it runs on this machine)
    and everything else (the bench itself, and whatever else runs on the machine)."""

    def __init__(self, coordinator: int, worker: int, postmaster: int | None) -> None:
        self.groups: dict[str, Callable[[], list[int]]] = {
            "coordinator": lambda: [coordinator],
            "worker": lambda: [worker],
            "pool": lambda: descendants(worker),  # the fork server's children, or spawned
            "postgres": (lambda: [postmaster, *child_pids(postmaster)]) if postmaster else list,
        }
        self.used: dict[str, float] = {}

    def _sample(self) -> dict[str, dict[int, float]]:
        return {name: {p: cpu_seconds(p) for p in pids()} for name, pids in self.groups.items()}

    def __enter__(self) -> CpuMeter:
        self._start = self._sample()
        self._machine = machine_cpu_seconds()
        self._began = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._sample()
        self.wall = time.monotonic() - self._began
        self.used = {
            name: sum(cpu - self._start[name].get(pid, 0.0) for pid, cpu in end[name].items())
            for name in end
        }
        self.used["machine"] = machine_cpu_seconds() - self._machine
        self.used["other"] = max(0.0, self.used["machine"] - sum(
            v for k, v in self.used.items() if k != "machine"))

    def per_item_us(self, items: int) -> dict[str, int]:
        """Microseconds of CPU per item, by process group (and the machine's total)."""
        return {name: round(seconds / items * 1e6) for name, seconds in self.used.items()}

    def brief(self, items: int, unit: str) -> str:
        us = self.per_item_us(items)
        return (f"CPU us per {unit}: coordinator {us['coordinator']}, worker {us['worker']},"
                f" pool {us['pool']}, postgres {us['postgres']}, other {us['other']};"
                f" {self.used['machine'] / self.wall:.1f} of {os.cpu_count()} cores busy")
