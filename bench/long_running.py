"""Long-running task figures (issue: checkpoints and graceful shutdown).

    .venv/bin/python -m bench.long_running [--json]

- checkpoint calls per second in a tight loop when nothing changes, measured inside a real
  pool process (the handler times 2,000,000 ctx.checkpoint() calls);
- time from SIGTERM to worker exit while a task checkpoints every 10 ms (5 runs).

Uses $CONDUCTOR_DATABASE_URL (a scratch database is created there) or an embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
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

MODULE = "bench.long_tasks"


def _worker(address: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "conductor_worker", "--log-level", "WARNING", "worker", MODULE,
         "--server", address],
        cwd=ROOT,
    )


def _registered(client: Client) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            client.invoke("bench-checkpoint-rate", {"calls": 1})
            return
        except Exception:
            time.sleep(0.05)
    raise RuntimeError("the bench worker did not register")


def run(admin_url: str) -> dict[str, float]:
    name = f"conductor_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    coordinator = CoordinatorThread(Settings(database_url=make_conninfo(admin_url, dbname=name),
                                             port=0))
    address = coordinator.start()
    figures: dict[str, float] = {}
    try:
        with Client(address) as client:
            worker = _worker(address)
            _registered(client)
            execution = client.invoke("bench-checkpoint-rate", {"calls": 2_000_000})
            figures["checkpoint_calls_per_s"] = round(client.wait(execution, timeout=300).result)
            worker.terminate()
            worker.wait(60)
            exits = []
            for _ in range(5):
                worker = _worker(address)
                execution = client.invoke("bench-checkpoint-loop", {"interval": 0.01})
                deadline = time.monotonic() + 60
                while client.get(execution).state != "running":
                    if time.monotonic() > deadline:
                        raise RuntimeError("the checkpoint loop did not start")
                    time.sleep(0.01)
                time.sleep(0.2)
                started = time.monotonic()
                worker.send_signal(signal.SIGTERM)
                code = worker.wait(60)
                exits.append(time.monotonic() - started)
                if code != 0:
                    raise RuntimeError(f"worker exited {code} after SIGTERM")
                if client.get(execution).state != "pending":
                    raise RuntimeError("the execution was not released")
                client.cancel(execution)
            figures["sigterm_to_exit_ms_median"] = round(statistics.median(exits) * 1000)
            figures["sigterm_to_exit_ms_max"] = round(max(exits) * 1000)
    finally:
        coordinator.stop()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    admin = os.environ.get("CONDUCTOR_DATABASE_URL")
    if admin:
        figures = run(admin)
    else:
        with tempfile.TemporaryDirectory() as tmp, EmbeddedPostgres(Path(tmp)) as url:
            figures = run(url)
    if args.json:
        print(json.dumps(figures))
    else:
        median, worst = figures["sigterm_to_exit_ms_median"], figures["sigterm_to_exit_ms_max"]
        print(f"checkpoint: {figures['checkpoint_calls_per_s']:,} calls/s in a tight loop; "
              f"SIGTERM to exit with 10 ms checkpoints: median {median} ms, max {worst} ms")


if __name__ == "__main__":
    main()
