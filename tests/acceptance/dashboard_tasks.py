"""Tasks of the dashboard tests (tests/acceptance/test_dashboard_*.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from conductor_worker import Context, Event, task


@task(name="dash-steps", max_attempts=1, processes=2)
def steps(event: Event, ctx: Context) -> dict[str, Any]:
    """Three steps, each taking `delay` seconds (after an optional `hold` before the first),
    so that a page sees it running."""
    payload = event.payload or {}
    time.sleep(payload.get("hold", 0))
    delay = payload.get("delay", 0.05)
    for name in ("fetch", "transform", "store"):
        ctx.step(name, lambda name=name: time.sleep(delay) or name)
    return {"stored": True, **payload}


@task(name="dash-hang", max_attempts=1)
def hang(event: Event, ctx: Context) -> None:
    """Runs until cancelled (checkpoints in a loop)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ctx.checkpoint()
        time.sleep(0.05)


@task(name="dash-fail", max_attempts=1)
def fail(event: Event, ctx: Context) -> None:
    """Fails while the payload says so (a retry after flipping nothing fails again)."""
    raise ValueError(f"cannot process {event.payload!r}")


@task(name="dash-gated", max_attempts=1)
def gated(event: Event, ctx: Context) -> str:
    """Fails until the file named in the payload exists (so a retry after creating it
    succeeds)."""
    if not Path(event.payload["gate"]).exists():
        raise RuntimeError("the gate is closed")
    return "passed"
