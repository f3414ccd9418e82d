"""Tasks the acceptance tests run in real worker processes.

Side effects are appended to a file named in the payload, so tests count them outside the
worker.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from conductor_worker import Context, Event, task

FAST_RETRY = {"backoff": 0.05, "max_backoff": 0.1}


def effect(path: str, line: str) -> None:
    with open(path, "a") as f:
        f.write(line + "\n")


@task(name="noop", processes=2)
def noop(event: Event, ctx: Context) -> Any:
    return event.payload


@task(name="fail-after-two-steps", max_attempts=3, **FAST_RETRY)
def fail_after_two_steps(event: Event, ctx: Context) -> dict[str, int]:
    path = event.payload["effects"]
    ctx.step("one", lambda: effect(path, "one") or 1)
    ctx.step("two", lambda: effect(path, "two") or 2)
    effect(path, f"after-steps-attempt-{ctx.attempt}")
    if ctx.attempt == 1:
        raise RuntimeError("boom after two steps")
    return {"attempt": ctx.attempt}


@task(name="slow-steps", **FAST_RETRY)
def slow_steps(event: Event, ctx: Context) -> int:
    path, count, delay = event.payload["effects"], event.payload["count"], event.payload["delay"]

    def do(i: int) -> int:
        effect(path, f"step-{i}")
        time.sleep(delay)
        return i

    for i in range(count):
        ctx.step(f"step-{i}", lambda i=i: do(i))
    return count


@task(name="crash-once", **FAST_RETRY)
def crash_once(event: Event, ctx: Context) -> dict[str, int]:
    if ctx.attempt == 1:
        Path(event.payload["pidfile"]).write_text(str(os.getpid()))
        time.sleep(120)
    return {"attempt": ctx.attempt}


@task(name="exit-hard", **FAST_RETRY)
def exit_hard(event: Event, ctx: Context) -> str:
    if ctx.attempt == 1:
        os._exit(3)
    return "ok"


@task(name="always-fails", max_attempts=2, **FAST_RETRY)
def always_fails(event: Event, ctx: Context) -> None:
    raise ValueError(f"bad value {event.payload!r}")


@task(name="returns-a-set", max_attempts=3, **FAST_RETRY)
def returns_a_set(event: Event, ctx: Context) -> Any:
    return {1, 2}  # not JSON: can never be stored, whatever the attempt


def _timed(event: Event) -> None:
    """Records when it started and ended (epoch seconds) in the effects file."""
    started = time.time()
    time.sleep(event.payload["seconds"])
    effect(event.payload["effects"], f"{started} {time.time()}")


@task(name="three-processes", processes=3, prefetch=0)
def three_processes(event: Event, ctx: Context) -> None:
    _timed(event)


@task(name="two-processes", processes=2)
def two_processes(event: Event, ctx: Context) -> None:
    _timed(event)


@task(name="capped-four", processes=3, concurrency=4)
def capped_four(event: Event, ctx: Context) -> None:
    _timed(event)


@task(name="async-echo")
async def async_echo(event: Event, ctx: Any) -> Any:
    value = await ctx.step("echo", lambda: event.payload)
    return {"echo": value, "attempt": ctx.attempt}


@task(name="ordered", processes=1, prefetch=0)
def ordered(event: Event, ctx: Context) -> str:
    effect(event.payload["effects"], event.payload["label"])
    return event.payload["label"]


@task(name="manage-schedule")
def manage_schedule(event: Event, ctx: Context) -> Any:
    action = event.payload["action"]
    if action == "delete":
        return ctx.unschedule("dynamic", task="noop")
    return ctx.schedule(
        "dynamic", event.payload["cron"], task="noop", payload={"set_by": action},
        timezone="Europe/Berlin",
    )


@task(name="threaded", processes=1, threads=4, prefetch=0, max_attempts=1)
def threaded(event: Event, ctx: Context) -> int:
    """Waits until `together` runs have started: only possible if they run concurrently."""
    path = Path(event.payload["effects"])
    effect(str(path), f"start {os.getpid()}")
    deadline = time.monotonic() + 30
    while len(path.read_text().splitlines()) < event.payload["together"]:
        if time.monotonic() > deadline:
            raise TimeoutError("the other runs never started")
        time.sleep(0.01)
    ctx.step("after-meeting", lambda: event.payload["i"])
    if event.payload.get("hang"):
        time.sleep(120)
    return os.getpid()


@task(name="threaded-async", processes=1, threads=4, prefetch=0, max_attempts=1)
async def threaded_async(event: Event, ctx: Any) -> int:
    """`threaded` as an async handler: the runs are coroutines on one event loop."""
    path = Path(event.payload["effects"])
    effect(str(path), f"start {os.getpid()}")
    deadline = time.monotonic() + 30
    while len(path.read_text().splitlines()) < event.payload["together"]:  # noqa: ASYNC240
        if time.monotonic() > deadline:
            raise TimeoutError("the other runs never started")
        await asyncio.sleep(0.01)
    await ctx.step("after-meeting", lambda: event.payload["i"])
    if event.payload.get("hang"):
        await asyncio.sleep(120)
    return os.getpid()


@task(name="prefetch-hold", processes=1, prefetch=4, max_attempts=3, **FAST_RETRY)
def prefetch_hold(event: Event, ctx: Context) -> int:
    """Records that it started (execution id and pid), then runs until the release file
    exists: one at a time, with four more leases prefetched behind it."""
    effect(event.payload["started"], f"{ctx.execution_id} {os.getpid()}")
    deadline = time.monotonic() + 120
    while not Path(event.payload["release"]).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return ctx.attempt
