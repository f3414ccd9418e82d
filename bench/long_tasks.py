"""Tasks of bench/long_running.py."""

from __future__ import annotations

import time

from conductor_worker import Context, Event, task


@task(name="bench-checkpoint-rate")
def checkpoint_rate(event: Event, ctx: Context) -> float:
    """Calls ctx.checkpoint() in a tight loop and returns calls per second."""
    calls = event.payload["calls"]
    checkpoint = ctx.checkpoint
    started = time.perf_counter()
    for _ in range(calls):
        checkpoint()
    return calls / max(time.perf_counter() - started, 1e-9)


@task(name="bench-checkpoint-loop")
def checkpoint_loop(event: Event, ctx: Context) -> None:
    """Checkpoints every `interval` seconds until released."""
    while True:
        time.sleep(event.payload["interval"])
        ctx.checkpoint()
