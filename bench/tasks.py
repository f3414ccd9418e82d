"""Tasks the benchmarks run."""

from __future__ import annotations

from typing import Any

from conductor_worker import Context, Event, task


@task(name="bench-noop", processes=2, prefetch=256)
def noop(event: Event, ctx: Context) -> None:
    return None


@task(name="bench-steps", processes=2, prefetch=64)
def steps(event: Event, ctx: Context) -> int:
    for i in range(10):
        ctx.step(f"s{i}", lambda i=i: i)
    return 10


def ignore(*_: Any) -> None:
    return None
