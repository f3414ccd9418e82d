"""The peer: S1's workload on Procrastinate (https://procrastinate.readthedocs.io).

    python -m bench.peer --database-url URL [--count 20000] [--candidates 1x1,1x5,...]

On the given (scratch) database: applies Procrastinate's schema, then, for each candidate
"PROCESSESxCONCURRENCY", defers `--tune-count` no-op jobs with batch_defer_async and drains
them with that many worker processes of that concurrency each (`run_worker_async(wait=False)`,
which returns once the queue is empty). The best candidate then drains `--count` jobs.
Tasks/s is measured like Conductor's S1, from the first job start to the last job finish
(Procrastinate's own 'started' and 'succeeded' events). Prints one JSON object.

The peer gets its best case: an `async def` no-op task (a sync one would go through a thread
per job), a connection pool with room for every concurrent job, no LISTEN/NOTIFY connection
(the workers only drain), and its worker concurrency (and 1 or 2 worker processes) tuned on
this machine in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from typing import Any

import procrastinate
from procrastinate.worker import WORKER_CONCURRENCY

DEFER_CHUNK = 1000
CANDIDATES = "1x1,1x5,1x10,1x20,2x5,2x10"


async def noop(n: int) -> None:
    return None


def build_app(url: str, pool_size: int) -> tuple[procrastinate.App, Any]:
    connector = procrastinate.PsycopgConnector(
        conninfo=url, min_size=pool_size, max_size=pool_size
    )
    app = procrastinate.App(connector=connector)
    task = app.task(name="bench-noop")(noop)
    return app, task


async def _one(app: procrastinate.App, query: str) -> dict[str, Any]:
    return await app.connector.execute_query_one_async(query)  # type: ignore[arg-type]


async def work(url: str, concurrency: int, defaults: bool = False) -> None:
    """One worker process: run jobs until the queue is empty (`defaults`: with nothing but
    what draining needs set, so Procrastinate's own defaults for the rest)."""
    if defaults:
        connector = procrastinate.PsycopgConnector(conninfo=url)
        app = procrastinate.App(connector=connector)
        app.task(name="bench-noop")(noop)
        async with app.open_async():
            await app.run_worker_async(wait=False, install_signal_handlers=False,
                                       delete_jobs="never")
        return
    app, _ = build_app(url, pool_size=min(concurrency + 2, 40))
    async with app.open_async():
        await app.run_worker_async(
            concurrency=concurrency,
            wait=False,
            listen_notify=False,
            install_signal_handlers=False,
            delete_jobs="never",
        )


async def drain(url: str, count: int, processes: int, concurrency: int,
                defaults: bool = False) -> dict[str, Any]:
    """Defer `count` jobs into empty tables, then drain them with worker processes."""
    app, task = build_app(url, pool_size=2)
    async with app.open_async():
        await app.connector.execute_query_async(
            "TRUNCATE procrastinate_events, procrastinate_periodic_defers, procrastinate_jobs,"
            " procrastinate_workers RESTART IDENTITY CASCADE"
        )
        began = time.monotonic()
        for offset in range(0, count, DEFER_CHUNK):
            await task.batch_defer_async(
                *({"n": n} for n in range(offset, min(count, offset + DEFER_CHUNK)))
            )
        deferred = time.monotonic() - began
        began = time.monotonic()
        cmd = [sys.executable, "-m", "bench.peer", "--database-url", url,
               "--work", str(concurrency), *(["--defaults"] if defaults else [])]
        workers = [
            await asyncio.create_subprocess_exec(*cmd) for _ in range(processes)
        ]
        codes = [await w.wait() for w in workers]
        wall = time.monotonic() - began
        if any(codes):
            raise RuntimeError(f"procrastinate workers exited with {codes}")
        row = await _one(
            app,
            "SELECT (SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded') AS done,"
            " min(at) FILTER (WHERE type = 'started') AS first,"
            " max(at) FILTER (WHERE type = 'succeeded') AS last"
            " FROM procrastinate_events",
        )
    if row["done"] != count:
        raise RuntimeError(f"procrastinate: {row['done']} of {count} jobs succeeded")
    span = max((row["last"] - row["first"]).total_seconds(), 1e-9)
    return {
        "processes": processes,
        "concurrency": concurrency,
        "jobs": count,
        "tasks_per_s": round(count / span),
        "drain_s": round(span, 3),
        "workers_wall_s": round(wall, 3),
        "defer_per_s": round(count / deferred),
    }


async def run(url: str, count: int, candidates: list[tuple[int, int]],
              tune_count: int, defaults: bool = False) -> dict[str, Any]:
    app, _ = build_app(url, pool_size=1)
    async with app.open_async():
        row = await _one(app, "SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS present")
        if not row["present"]:
            await app.schema_manager.apply_schema_async()
    if defaults:
        final = await drain(url, count, 1, WORKER_CONCURRENCY, defaults=True)
        return {**final, "tuning": [], "procrastinate": procrastinate.__version__}
    tuning = [await drain(url, tune_count, p, c) for p, c in candidates]
    best = max(tuning, key=lambda t: t["tasks_per_s"])
    final = await drain(url, count, best["processes"], best["concurrency"])
    return {**final, "tuning": tuning, "procrastinate": procrastinate.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--candidates", default=CANDIDATES,
                        help="PROCESSESxCONCURRENCY,...; the best one runs --count jobs")
    parser.add_argument("--tune-count", type=int, default=1_000)
    parser.add_argument("--defaults", action="store_true",
                        help="no tuning: one worker with Procrastinate's own defaults")
    parser.add_argument("--work", type=int, metavar="CONCURRENCY",
                        help="(internal) run one worker until the queue is empty")
    args = parser.parse_args()
    # run as __main__, Procrastinate warns that the app lives in the main module: harmless here
    logging.getLogger("procrastinate.blueprints").setLevel(logging.ERROR)
    if args.work:
        asyncio.run(work(args.database_url, args.work, args.defaults))
        return
    candidates = [
        (int(p), int(c)) for p, c in (item.split("x") for item in args.candidates.split(","))
    ]
    result = asyncio.run(run(args.database_url, args.count, candidates, args.tune_count,
                             args.defaults))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
