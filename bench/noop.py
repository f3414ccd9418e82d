"""Quick throughput check: N no-op executions through one worker with 2 pool processes.

    .venv/bin/python bench/noop.py [--count 10000]

Uses $CONDUCTOR_DATABASE_URL when set (a scratch database is created on that server),
otherwise an embedded PostgreSQL in a temporary folder. Prints one line of figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from conductor_server.app import CoordinatorThread  # noqa: E402
from conductor_server.database import EmbeddedPostgres  # noqa: E402
from conductor_server.settings import Settings  # noqa: E402
from conductor_worker import Client  # noqa: E402


def scratch_database(admin_url: str) -> str:
    name = f"conductor_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    return make_conninfo(admin_url, dbname=name)


def run(count: int, task: str, admin_url: str) -> dict[str, float]:
    url = scratch_database(admin_url)
    coordinator = CoordinatorThread(Settings(database_url=url, port=0))
    address = coordinator.start()
    worker = subprocess.Popen(
        [sys.executable, "-m", "conductor_worker", "--log-level", "WARNING", "worker",
         "bench.tasks", "--server", address],
        cwd=ROOT,
    )
    try:
        with Client(address) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.invoke_batch(task, [0])
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            time.sleep(1.0)
            started = time.monotonic()
            ids: list[str] = []
            for offset in range(0, count, 5000):
                ids += client.invoke_batch(task, list(range(offset, min(count, offset + 5000))))
            enqueued = time.monotonic()
            for execution_id in (ids[0], ids[-1]):
                client.wait(execution_id, timeout=600)
            with psycopg.connect(url) as conn:
                while True:
                    row = conn.execute(
                        "SELECT count(*) FILTER (WHERE state <> 'succeeded'),"
                        " min(started_at), max(finished_at) FROM conductor_executions"
                        " WHERE id = ANY(%s)", ([int(i) for i in ids],)
                    ).fetchone()
                    assert row is not None
                    if row[0] == 0:
                        break
                    time.sleep(0.05)
            finished = time.monotonic()
            drain = (row[2] - row[1]).total_seconds()
        return {
            "count": count,
            "enqueue_per_s": round(count / (enqueued - started)),
            "tasks_per_s_first_lease_to_last_completion": round(count / drain),
            "wall_s": round(finished - started, 2),
        }
    finally:
        worker.terminate()
        worker.wait(30)
        coordinator.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--task", default="bench-noop")
    args = parser.parse_args()
    admin = os.environ.get("CONDUCTOR_DATABASE_URL")
    if admin:
        print(json.dumps(run(args.count, args.task, admin)))
        return
    with tempfile.TemporaryDirectory() as tmp, EmbeddedPostgres(Path(tmp)) as url:
        print(json.dumps(run(args.count, args.task, url)))


if __name__ == "__main__":
    main()
