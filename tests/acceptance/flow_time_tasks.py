"""Tasks for the flow-control tests: handlers that never end (each kind a timeout must stop),
a threaded pool whose other run is caught in a timeout, and a dead-letter pair."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from conductor_worker import Context, Event, NonRetryableError, task


def _started(event: Event) -> None:
    """Note when this run's handler began (the payload names the file), so that a test
    measures the timeout from the run's start, as it counts."""
    with open(event.payload["started"], "a") as f:
        f.write(f"{time.time()}\n")


@task(name="spin", timeout=1, max_attempts=2, backoff=0.1, min_processes=1)
def spin(event: Event, ctx: Context) -> None:
    _started(event)
    while True:  # pure Python, never yields to anything
        pass


@task(name="sleep-forever", timeout=1, max_attempts=2, backoff=0.1, min_processes=1)
def sleep_forever(event: Event, ctx: Context) -> None:
    _started(event)
    time.sleep(1e9)


@task(name="async-forever", timeout=1, max_attempts=2, backoff=0.1, min_processes=1)
async def async_forever(event: Event, ctx: Context) -> None:
    _started(event)
    if event.payload.get("block"):
        time.sleep(1e9)  # noqa: ASYNC251 (on purpose: blocks the process's event loop too)
    await asyncio.sleep(1e9)


@task(name="quick", min_processes=1)
def quick(event: Event, ctx: Context) -> Any:
    return event.payload


@task(name="threaded-timeouts", threads=2, timeout=30, max_attempts=2, backoff=0.1,
      min_processes=1)
def threaded_timeouts(event: Event, ctx: Context) -> Any:
    """{"hang": true} never ends; {"steps": n} records n steps a second apart (a step
    already recorded is not run again when the run is released and leased anew)."""
    if event.payload.get("hang"):
        time.sleep(1e9)
    for i in range(event.payload["steps"]):
        ctx.step(f"s{i}", _slow_step)
    return "done"


def _slow_step() -> int:
    time.sleep(1)
    return 1


@task(name="doomed", max_attempts=2, backoff=0.1, on_failure="bury")
def doomed(event: Event, ctx: Context) -> None:
    raise RuntimeError(f"cannot handle {event.payload!r}")


@task(name="bury")
def bury(event: Event, ctx: Context) -> Any:
    return {"buried": event.payload["execution_id"], "error": event.payload["error"]["type"]}


@task(name="batch-double", batch=10, batch_wait=0.3)
def batch_double(events: list[Event], ctx: Any) -> list[Any]:
    """Doubles x. {"flaky": path}: fails the first time (creates path), then succeeds;
    {"never": true}: fails for good through ctx.fail."""
    results: list[Any] = []
    for i, event in enumerate(events):
        payload = event.payload
        if "flaky" in payload and not Path(payload["flaky"]).exists():
            Path(payload["flaky"]).touch()
            results.append(RuntimeError("flaky the first time"))
            continue
        if payload.get("never"):
            ctx.fail(i, NonRetryableError("never works"))
        results.append({"x": payload["x"] * 2, "size": len(events),
                        "id": event.execution_id})
    return results


@task(name="batch-hang", batch=5, batch_wait=0.2, timeout=1, max_attempts=1)
def batch_hang(events: list[Event], ctx: Any) -> list[Any]:
    """A batch that never returns: its timeout fails every item."""
    time.sleep(1e9)
    return []
