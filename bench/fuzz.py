"""The long fuzz profile: hostile requests against a real coordinator, counts by status code.

    .venv/bin/python -m bench.fuzz [--examples 2000] [--database-url URL]

The same checks as the short profile in tests/fuzz (which runs with the test suite): no
INTERNAL or UNKNOWN answer, no row written by a refused request, no stream closed (the fuzzed
worker's, or a bystander's whose step saves must keep succeeding), the server still serving.
PostgreSQL: --database-url, else $CONDUCTOR_DATABASE_URL, else an embedded one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from psycopg.conninfo import make_conninfo

from conductor_server.app import CoordinatorThread
from conductor_server.settings import Settings
from conductor_server.store import Store
from tests.fuzz.harness import Fuzzer
from tests.fuzz.strategies import client_requests, registers, worker_messages

from .harness import PostgresServer


def _database(admin_url: str) -> tuple[str, str]:
    name = f"conductor_fuzz_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    url = make_conninfo(admin_url, dbname=name)

    async def migrate() -> None:
        store = Store(url, pool_size=2)
        await store.open()
        try:
            await store.migrate()
        finally:
            await store.close()

    asyncio.run(migrate())
    return name, url


def _run(examples: int, strategy: Any, check: Callable[[Any], None]) -> None:
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(case: Any) -> None:
        check(case)

    run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__)
    parser.add_argument("--examples", type=int, default=2000,
                        help="examples per kind: client RPCs, Register, worker messages")
    parser.add_argument("--database-url", default=os.environ.get("CONDUCTOR_DATABASE_URL"))
    args = parser.parse_args(argv)
    with PostgresServer(args.database_url) as server:
        assert server.url is not None
        name, url = _database(server.url)
        coordinator = CoordinatorThread(Settings(database_url=url, port=0, lease_timeout=3600,
                                                 register_timeout=5))
        address = coordinator.start()
        fuzzer = Fuzzer(address, url)
        started = time.monotonic()
        try:
            _run(args.examples, client_requests(), lambda case: fuzzer.client(*case))
            _run(args.examples, registers(), fuzzer.register)
            _run(args.examples, worker_messages(), fuzzer.worker)
            fuzzer.drain_unexpected()
        finally:
            fuzzer.close()
            coordinator.stop()
            with psycopg.connect(server.url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
    _print(fuzzer.summary(), time.monotonic() - started)
    return 0


def _print(summary: dict[str, Counter[str]], seconds: float) -> None:
    total: Counter[str] = Counter()
    for kind in sorted(summary):
        counts = summary[kind]
        total.update(counts)
        line = ", ".join(f"{code} {n}" for code, n in counts.most_common())
        print(f"{kind:24} {sum(counts.values()):6}  {line}")
    print(f"{'all':24} {sum(total.values()):6}  "
          + ", ".join(f"{code} {n}" for code, n in total.most_common()))
    print(f"no INTERNAL/UNKNOWN, no rows from refused requests, no stream closed "
          f"({seconds:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
