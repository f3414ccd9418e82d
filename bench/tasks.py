"""The tasks the benchmark scenarios run (see bench/scenarios.py for which runs where).

A bench worker (`python -m bench.worker --server ADDR NAME...`) registers only the tasks it is
given, so a scenario never spawns pool processes it does not use.
"""

from __future__ import annotations

import time
from typing import Any

from conductor_worker import AsyncContext, Context, Event, Task, task

#: How long a `bench-hold` run keeps its lease at most (S6 stops its worker long before).
HOLD_SECONDS = 300.0


@task(name="bench-noop", processes=2, prefetch=1024)
def noop(event: Event, ctx: Context) -> None:
    """S1: does nothing; the cost measured is Conductor's own."""
    return


@task(name="bench-noop-batch", processes=2, batch=100, batch_wait=0.05)
def noop_batch(events: list[Event], ctx: Any) -> list[None]:
    """S1-batch: the no-op as a batch handler, up to 100 executions per call."""
    return [None] * len(events)


@task(name="bench-noop-timeout", processes=2, timeout=60)
def noop_timeout(event: Event, ctx: Context) -> None:
    """S1-timeout: the no-op with an execution timeout (timed runs, and no prefetch)."""
    return


@task(name="bench-noop-default", processes=2)
def noop_default(event: Event, ctx: Context) -> None:
    """S1-default: the same no-op with nothing tuned (the lease window adapts)."""
    return


@task(name="bench-noop-keyed", processes=2, prefetch=1024, key="k", concurrency=1)
def noop_keyed(event: Event, ctx: Context) -> None:
    """S1-keyed: the no-op with at most one running per key (payload field "k")."""
    return


#: S1-rate's limit
RATE_LIMIT = 1000


@task(name="bench-noop-rated", processes=2, prefetch=1024, rate_limit=f"{RATE_LIMIT}/s")
def noop_rated(event: Event, ctx: Context) -> None:
    """S1-rate: the no-op under a rate limit (below what the worker could run)."""
    return


@task(name="bench-steps", processes=2, threads=128, prefetch=128)
async def steps(event: Event, ctx: AsyncContext) -> int:
    """S2: ten recorded steps, each durable before the next one starts. 128 runs at a time in
    each of the 2 pool processes (coroutines on the process's event loop), so that step saves
    from many runs share group commits."""
    for i in range(10):
        await ctx.step(f"s{i}", lambda i=i: i)
    return 10


@task(name="bench-steps-sync", processes=2, threads=128, prefetch=128)
def steps_sync(event: Event, ctx: Context) -> int:
    """S2 with a plain handler: the same steps at the same concurrency, 128 handler threads
    per pool process (until round 3: 64, half of S2's runs at a time, which halved the steps
    per group commit and so the throughput)."""
    for i in range(10):
        ctx.step(f"s{i}", lambda i=i: i)
    return 10


@task(name="bench-latency", processes=2)
def started_at(event: Event, ctx: Context) -> float:
    """S3 and S5: returns the wall-clock time at which the handler started."""
    return time.time()


@task(name="bench-retry", processes=1, max_attempts=4, backoff=0.2, backoff_multiplier=1.0,
      jitter=0.0)
def retry_start(event: Event, ctx: Context) -> int:
    """S7: records when each attempt started (a step per attempt), fails the first three."""
    ctx.step(f"attempt-{ctx.attempt}", time.time)
    if ctx.attempt < 4:
        raise RuntimeError("S7: fail this attempt to be retried")
    return ctx.attempt


@task(name="bench-backlog", processes=1)
def backlog(event: Event, ctx: Context) -> None:
    """S5: the "other" task whose ready executions make the queue deep. Its worker only
    registers it and leaves, so nothing ever runs it."""
    return


@task(name="bench-hold", processes=2, prefetch=1998)
def hold(event: Event, ctx: Context) -> None:
    """S6: keeps its lease until the worker stops (2 running + 1,998 prefetched = 2,000
    leases held by one worker)."""
    deadline = time.monotonic() + HOLD_SECONDS
    while time.monotonic() < deadline:
        ctx.checkpoint()  # a stopping worker releases the run here
        time.sleep(0.05)


@task(name="bench-fan-parent", processes=1)
async def fan_parent(event: Event, ctx: AsyncContext) -> int:
    """S7-fanout: invokes `event.payload` no-op children in one invoke_many and waits."""
    results = await ctx.invoke_many("fan", "bench-fan-child", list(range(event.payload)))
    return len(results)


@task(name="bench-fan-child", processes=2, threads=16, prefetch=1024)
def fan_child(event: Event, ctx: Context) -> None:
    """S7-fanout: a no-op child."""
    return


@task(name="bench-resume-parent", processes=1)
def resume_parent(event: Event, ctx: Context) -> int:
    """S7-fanout: invokes children one after another; after each, records when it resumed
    (a step, so the time is taken on the run the child's end resumed)."""
    for k in range(event.payload):
        ctx.invoke(f"c{k}", "bench-child-time", k)
        ctx.step(f"r{k}", time.time)
    return int(event.payload)


@task(name="bench-child-time", processes=1)
def child_time(event: Event, ctx: Context) -> float:
    """S7-fanout: returns when it ended (wall clock)."""
    return time.time()


@task(name="bench-on-event", on="bench.event", processes=2)
def on_event(event: Event, ctx: Context) -> float:
    """S8: runs on each emitted bench.event; returns when its handler started."""
    return time.time()


@task(name="bench-half-second", processes=2)
def half_second(event: Event, ctx: Context) -> None:
    """S11: half a second of (sleeping) work, nothing tuned."""
    time.sleep(0.5)


@task(name="bench-priority", processes=2)
def priority_start(event: Event, ctx: Context) -> float:
    """S12: a no-op with nothing tuned that returns when its handler started (epoch s)."""
    return time.time()


def registered_bench_tasks() -> dict[str, Task[..., Any]]:
    """Every task of this module, by task name."""
    return {v.name: v for v in globals().values() if isinstance(v, Task)}

