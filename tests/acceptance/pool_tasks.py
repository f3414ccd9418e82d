"""Tasks for the pool lifecycle tests: on-demand pools, a warm minimum and a shared pool."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from conductor_worker import Context, Event, task


def _process() -> dict[str, int]:
    """This pool process, and the threads of the process that forked it."""
    return {"pid": os.getpid(), "parent": os.getppid(),
            "parent_threads": len(os.listdir(f"/proc/{os.getppid()}/task"))}


def _hold(payload: Any) -> None:
    """Wait (up to a minute) until the file named in the payload exists, if one is."""
    if isinstance(payload, dict) and "until" in payload:
        deadline = time.monotonic() + 60
        while not Path(payload["until"]).exists() and time.monotonic() < deadline:
            time.sleep(0.02)


@task(name="pool-on-demand", processes=2)
def on_demand(event: Event, ctx: Context) -> dict[str, int]:
    _hold(event.payload)
    return _process()


@task(name="pool-warm", processes=2, min_processes=1)
def warm(event: Event, ctx: Context) -> dict[str, int]:
    _hold(event.payload)
    return _process()


@task(name="shared-echo", pool="shared")
def shared_echo(event: Event, ctx: Context) -> dict[str, Any]:
    return {**_process(), "echo": event.payload}


@task(name="shared-crash", pool="shared", backoff=0.05, max_backoff=0.1)
def shared_crash(event: Event, ctx: Context) -> dict[str, int]:
    if event.payload == "crash":
        os._exit(7)
    return _process()
