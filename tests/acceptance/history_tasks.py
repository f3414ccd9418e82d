"""Tasks of the history, rerun and retention tests (tests/acceptance/test_history.py).

Side effects are appended to a file named in the payload, so that tests count them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from conductor_worker import Context, Event, task

FAST_RETRY = {"backoff": 0.05, "max_backoff": 0.1}


def effect(path: str, line: str) -> str:
    with open(path, "a") as f:
        f.write(line + "\n")
    return line


@task(name="history-every-outcome", max_attempts=4, **FAST_RETRY)
def every_outcome(event: Event, ctx: Context) -> dict[str, int]:
    """Attempt 1 fails; attempt 2 sleeps (a release), then hangs until its worker is killed
    (WorkerLost); attempt 3 succeeds."""
    ready = event.payload["ready"]
    if ctx.attempt == 1:
        raise ValueError("first attempt fails")
    if ctx.attempt == 2:
        ctx.sleep("nap", 0.05)
        Path(ready).write_text("hanging")
        time.sleep(120)
    return {"attempt": ctx.attempt}


@task(name="history-steps", max_attempts=1)
def steps(event: Event, ctx: Context) -> list[str]:
    """Three steps with counted side effects; fails after them when told to."""
    path = event.payload["effects"]
    done = [ctx.step(name, lambda name=name: effect(path, name)) for name in ("a", "b", "c")]
    if event.payload.get("fail"):
        raise RuntimeError("told to fail")
    return done


@task(name="history-noop", max_attempts=1, retention={"succeeded": "1h", "failed": 7200},
      redact_after="30m")
def noop(event: Event, ctx: Context) -> Any:
    ctx.step("echo", lambda: event.payload)
    if isinstance(event.payload, dict) and event.payload.get("fail"):
        raise RuntimeError(f"secret {event.payload['fail']}")
    return event.payload


@task(name="history-hang")
def hang(event: Event, ctx: Context) -> None:
    """Runs until its worker stops (a running execution for retention to leave alone)."""
    Path(event.payload["ready"]).write_text("running")
    time.sleep(600)
