"""Scheduler cost (issue: scheduling): fires per second the coordinator turns into executions
with 10,000 active schedules all due at once.

    .venv/bin/python -m bench.scheduler [--schedules 10000] [--json]

The clock is frozen and moved past the schedules' fire time; the figure is schedules fired
(one execution each, committed) divided by the time until the last one exists.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from conductor.v1 import worker_pb2  # noqa: E402
from conductor_server.app import CoordinatorThread  # noqa: E402
from conductor_server.clock import ShiftableClock  # noqa: E402
from conductor_server.database import EmbeddedPostgres  # noqa: E402
from conductor_server.settings import Settings  # noqa: E402
from tests.integration.raw_worker import RawWorker  # noqa: E402

START = datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC)


def run(admin_url: str, count: int) -> dict[str, float]:
    name = f"conductor_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    url = make_conninfo(admin_url, dbname=name)
    clock = ShiftableClock(START, frozen=True)
    coordinator = CoordinatorThread(Settings(database_url=url, port=0), clock)
    address = coordinator.start()
    try:
        RawWorker(address, worker_pb2.TaskDefinition(
            name="bench-cron", processes=1, capacity=1, max_attempts=1,
            retry=worker_pb2.RetryPolicy(initial_backoff_seconds=1, max_backoff_seconds=1,
                                         multiplier=1))).close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO conductor_schedules (task, name, cron, next_fire_at, created_at,"
                " updated_at) SELECT 'bench-cron', 's' || g, '* * * * *', %(at)s, %(now)s,"
                " %(now)s FROM generate_series(1, %(n)s) g",
                {"at": START + timedelta(seconds=30), "now": START, "n": count},
            )
            started = time.perf_counter()
            clock.advance(timedelta(minutes=1))
            while True:
                done = conn.execute("SELECT count(*) FROM conductor_executions").fetchone()
                if done and done[0] >= count:
                    break
                time.sleep(0.01)
            took = time.perf_counter() - started
        return {"schedules": count, "seconds": round(took, 3),
                "fires_per_s": round(count / took)}
    finally:
        coordinator.stop()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    admin = os.environ.get("CONDUCTOR_DATABASE_URL")
    if admin:
        figures = run(admin, args.schedules)
    else:
        with tempfile.TemporaryDirectory() as tmp, EmbeddedPostgres(Path(tmp)) as url:
            figures = run(url, args.schedules)
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"scheduler: {figures['fires_per_s']:,} fires/s "
              f"({figures['schedules']:,} schedules due at once, {figures['seconds']} s)")


if __name__ == "__main__":
    main()
