"""Tasks whose handlers produce what once broke a worker's stream (issue 11)."""

from __future__ import annotations

from typing import Any

from conductor_worker import Context, Event, task


@task(name="nul-error", max_attempts=1)
def nul_error(event: Event, ctx: Context) -> Any:
    raise ValueError("bad header: b\x00\x01")


@task(name="fine")
def fine(event: Event, ctx: Context) -> Any:
    return event.payload
