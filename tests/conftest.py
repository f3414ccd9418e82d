"""Shared fixtures: a real PostgreSQL (CONDUCTOR_TEST_DATABASE_URL or embedded), one migrated
template database cloned per test, coordinators on port 0 and real worker processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from conductor_server.app import CoordinatorThread
from conductor_server.clock import ShiftableClock
from conductor_server.database import EmbeddedPostgres
from conductor_server.settings import Settings
from conductor_server.store import Store

ROOT = Path(__file__).resolve().parent.parent


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Admin URL of the PostgreSQL server the tests use."""
    url = os.environ.get("CONDUCTOR_TEST_DATABASE_URL")
    if url:
        yield url
        return
    embedded = EmbeddedPostgres(tmp_path_factory.mktemp("embedded-pg"))
    yield embedded.start()
    embedded.stop()


def _admin(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement.encode())


@pytest.fixture(scope="session")
def template_db(pg_server: str) -> Iterator[str]:
    """A database with the schema applied, cloned for every test."""
    name = f"conductor_tpl_{os.getpid()}"
    _admin(pg_server, f'DROP DATABASE IF EXISTS "{name}"')
    _admin(pg_server, f'CREATE DATABASE "{name}"')
    url = make_conninfo(pg_server, dbname=name)

    async def migrate() -> None:
        store = Store(url, pool_size=2)
        await store.open()
        try:
            await store.migrate()
        finally:
            await store.close()

    asyncio.run(migrate())
    yield name
    _admin(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(pg_server: str, template_db: str) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    name = f"conductor_t_{uuid.uuid4().hex[:12]}"
    _admin(pg_server, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    yield make_conninfo(pg_server, dbname=name)
    _admin(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A direct connection to the test database, for checking what was written."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def frozen_clock(request: pytest.FixtureRequest) -> bool:
    """Parametrize indirectly with True to stop time between the test's jumps."""
    return bool(getattr(request, "param", False))


@pytest.fixture
def clock(frozen_clock: bool) -> ShiftableClock:
    return ShiftableClock(frozen=frozen_clock)


@pytest.fixture
def start_coordinator(
    database_url: str, clock: ShiftableClock
) -> Iterator[Callable[..., CoordinatorThread]]:
    """Start coordinators on port 0 against the test database (stopped after the test)."""
    started: list[CoordinatorThread] = []

    def start(**overrides: Any) -> CoordinatorThread:
        options: dict[str, Any] = {"port": 0, "reaper_interval": 0.1, **overrides}
        settings = Settings(database_url=database_url, **options)
        coordinator = CoordinatorThread(settings, clock)
        coordinator.start()
        started.append(coordinator)
        return coordinator

    yield start
    for coordinator in reversed(started):
        coordinator.stop()


@pytest.fixture
def coordinator(start_coordinator: Callable[..., CoordinatorThread]) -> CoordinatorThread:
    return start_coordinator()


@pytest.fixture
def address(coordinator: CoordinatorThread) -> str:
    return coordinator.coordinator.address


class WorkerProcess:
    """A real `conductor worker` process."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log_path = log
        self._log = log.open("wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "conductor_worker", *args],
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()
        return self.process.returncode


@pytest.fixture
def spawn_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start worker processes for a tasks module; they are stopped after the test."""
    workers: list[WorkerProcess] = []

    def spawn(
        address: str, module: str = "tests.acceptance.tasks", *extra: str, ready: bool = True
    ) -> WorkerProcess:
        log = tmp_path / f"worker-{len(workers)}.log"
        worker = WorkerProcess(["worker", module, "--server", address, *extra], log)
        workers.append(worker)
        if ready:
            wait_for(
                lambda: "connected to" in worker.output() or worker.process.poll() is not None,
                what="the worker to register",
            )
            assert worker.process.poll() is None, worker.output()
        return worker

    yield spawn
    for worker in workers:
        worker.stop()
