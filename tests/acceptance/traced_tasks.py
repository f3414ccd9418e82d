"""Tasks for the tracing tests (run in-process by Worker.drain, pool processes as usual)."""

from __future__ import annotations

from typing import Any

from conductor_worker import Context, Event, task


@task(name="traced-retry", max_attempts=3, backoff=0.05, max_backoff=0.1)
def traced_retry(event: Event, ctx: Context) -> int:
    first = ctx.step("one", lambda: 1)
    second = ctx.step("two", lambda: 2)
    if ctx.attempt == 1:
        raise RuntimeError("the first attempt fails after its steps")
    return first + second


@task(name="traced-async")
async def traced_async(event: Event, ctx: Any) -> int:
    return int(await ctx.step("only", lambda: 41)) + 1
