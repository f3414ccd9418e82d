"""Example tasks: run them with `conductor dev examples.tasks` from the repository root."""

from __future__ import annotations

import random
import time
from typing import Any

from conductor_worker import Context, Event, task


@task(name="add")
def add(event: Event, ctx: Context) -> int:
    """The smallest task: add two numbers."""
    return int(event.payload["a"]) + int(event.payload["b"])


@task(name="process-dataset", processes=2)
def process_dataset(event: Event, ctx: Context) -> dict[str, Any]:
    """One step per item: a retry never processes an item twice."""
    items = ctx.step("fetch-items", lambda: list(range(int(event.payload.get("count", 5)))))
    for item in items:
        ctx.step(f"process-{item}", lambda item=item: item * item)
        ctx.checkpoint()
    ctx.logger.info("processed %d items", len(items))
    return {"processed": len(items)}


@task(name="flaky", max_attempts=5, backoff=1.0)
def flaky(event: Event, ctx: Context) -> str:
    """Fails on its first attempt, then succeeds: shows retries with backoff."""
    if ctx.attempt == 1:
        raise RuntimeError("first attempt always fails")
    return f"succeeded on attempt {ctx.attempt}"


@task(name="sleepy")
async def sleepy(event: Event, ctx: Any) -> float:
    """An async handler."""
    import asyncio

    seconds = float(event.payload or 0.1)
    started = time.monotonic()
    await asyncio.sleep(seconds)
    return round(time.monotonic() - started, 3)


@task(name="roll")
def roll(event: Event, ctx: Context) -> int:
    return random.randint(1, 6)
