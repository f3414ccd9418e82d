"""The seed document's examples as real tasks, plus helpers for shutdown and sleep tests.

Side effects go to the `effects` table of the database named by the payload's "dsn", so the
tests count them outside the worker.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import psycopg

from conductor_worker import AsyncContext, Context, Event, task

_connections: dict[str, psycopg.Connection[Any]] = {}


def db(dsn: str) -> psycopg.Connection[Any]:
    if dsn not in _connections:
        _connections[dsn] = psycopg.connect(dsn, autocommit=True)
    return _connections[dsn]


def effect(event: Event, item: str) -> None:
    db(event.payload["dsn"]).execute(
        "INSERT INTO effects (execution_id, item) VALUES (%s, %s)", (event.execution_id, item)
    )


def process_items(event: Event, ctx: Context) -> int:
    items = ctx.step("fetch-items", lambda: list(range(event.payload["count"])))
    delay = event.payload.get("delay", 0.0)
    for item in items:

        def process(item: int = item) -> None:
            effect(event, f"item-{item}")
            time.sleep(delay)

        ctx.step(f"process-{item}", process)
        ctx.checkpoint()
    return len(items)


@task(name="process-dataset", processes=2)
def process_dataset(event: Event, ctx: Context) -> dict[str, int]:
    return {"processed": process_items(event, ctx)}


@task(name="process-dataset-async", processes=1, threads=4)
async def process_dataset_async(event: Event, ctx: AsyncContext) -> dict[str, int]:
    """process-dataset as an async handler; several runs share one pool process."""
    items = await ctx.step("fetch-items", lambda: list(range(event.payload["count"])))
    delay = event.payload.get("delay", 0.0)
    for item in items:

        async def process(item: int = item) -> None:
            effect(event, f"item-{item}")
            await asyncio.sleep(delay)

        await ctx.step(f"process-{item}", process)
        ctx.checkpoint()
    return {"processed": len(items)}


@task(name="delete-old-data")
def delete_old_data(event: Event, ctx: Context) -> dict[str, bool]:
    conn = db(event.payload["dsn"])
    has_more = True
    while has_more:
        deleted = conn.execute(
            "DELETE FROM old_data WHERE id IN "
            "(SELECT id FROM old_data ORDER BY created_at LIMIT %s)",
            (event.payload.get("batch", 1000),),
        ).rowcount
        has_more = deleted > 0
        time.sleep(event.payload.get("delay", 0.0))
        ctx.checkpoint()
    return {"completed": True}


@task(name="heavy-processing", window=("22:00", "06:00"), timezone="Europe/Berlin")
def heavy_processing(event: Event, ctx: Context) -> int:
    return process_items(event, ctx)


@task(name="vacuum-database", window=("02:00", "04:00"))
def vacuum_database(event: Event, ctx: Context) -> list[str]:
    conn = db(event.payload["dsn"])

    def run(statement: str) -> str:
        conn.execute(statement.encode())
        effect(event, statement)
        return statement

    return [ctx.step("vacuum", lambda: run("VACUUM old_data")),
            ctx.step("analyze", lambda: run("ANALYZE old_data"))]


@task(name="process-support-tickets", window=("09:00", "17:00"))
def process_support_tickets(event: Event, ctx: Context) -> str:
    effect(event, f"notify-agent-{event.payload['ticket_id']}")
    return "notified"


@task(name="bulk-export", window=("20:00", "06:00"))
def bulk_export(event: Event, ctx: Context) -> int:
    records = ctx.step("fetch-records", lambda: list(range(event.payload["records"])))
    out = Path(event.payload["out"])
    for i in range(0, len(records), 1000):
        batch = records[i : i + 1000]

        def export(batch: list[int] = batch, i: int = i) -> int:
            with out.open("a") as f:
                f.write("".join(f"{r}\n" for r in batch))
            effect(event, f"batch-{i}")
            return len(batch)

        ctx.step(f"export-batch-{i}", export)
        ctx.checkpoint()
    return len(records)


@task(name="stubborn-step")
def stubborn_step(event: Event, ctx: Context) -> str:
    """A step that never checkpoints: only a second signal or the drain timeout stops it."""
    ctx.step("before", lambda: effect(event, "before"))

    def long() -> str:
        effect(event, "long-started")
        deadline = time.monotonic() + event.payload["seconds"]
        while time.monotonic() < deadline and not Path(event.payload["skip"]).exists():
            time.sleep(0.05)
        effect(event, "long-finished")
        return "long"

    ctx.step("long", long)
    return "done"


@task(name="napper")
def napper(event: Event, ctx: Context) -> str:
    ctx.step("before-nap", lambda: effect(event, "before-nap"))
    ctx.sleep("nap", event.payload["seconds"])
    ctx.step("after-nap", lambda: effect(event, "after-nap"))
    return "rested"


@task(name="async-napper")
async def async_napper(event: Event, ctx: Any) -> str:
    await ctx.step("before-nap", lambda: effect(event, "before-nap"))
    await ctx.sleep("nap", event.payload["seconds"])
    await ctx.step("after-nap", lambda: effect(event, "after-nap"))
    return "rested"


@task(name="checkpoint-loop")
def checkpoint_loop(event: Event, ctx: Context) -> int:
    """Checkpoints every `interval` seconds until released (SIGTERM timing)."""
    effect(event, "started")
    rounds = 0
    while True:
        time.sleep(event.payload["interval"])
        rounds += 1
        ctx.checkpoint()
        if rounds >= event.payload.get("max_rounds", 10**9):
            return rounds


def _wait_for_gate(event: Event) -> None:
    gate = Path(event.payload["gate"])
    while not gate.exists():
        time.sleep(0.01)


@task(name="window-gate", window=("09:00", "17:00"))
def window_gate(event: Event, ctx: Context) -> str:
    """Runs a step, waits for the test to open a gate file, then runs another step."""
    ctx.step("before", lambda: effect(event, "before"))
    _wait_for_gate(event)
    ctx.step("after", lambda: effect(event, "after"))
    return "done"


@task(name="window-gate-async", window=("09:00", "17:00"))
async def window_gate_async(event: Event, ctx: AsyncContext) -> str:
    await ctx.step("before", lambda: effect(event, "before"))
    await asyncio.to_thread(_wait_for_gate, event)
    await ctx.step("after", lambda: effect(event, "after"))
    return "done"
