"""S1-keyed and S1-rate: what flow control costs against plain S1 (docs/performance.md)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING

from .harness import BenchError, Result, span_seconds
from .tasks import RATE_LIMIT

if TYPE_CHECKING:
    from .scenarios import Run

S1_COUNT = 20_000
KEYS = 100
#: S1-rate: executions invoked, and the seconds of steady state measured after the burst
RATE_COUNT = 14_000
RATE_WINDOW = 10.0


def s1_keyed(run: Run) -> Result:
    """S1 with per-key concurrency: 20,000 no-op executions over 100 keys, at most one
    running per key (so at most 100 leased at once), one worker with 2 pool processes."""
    label, task = "S1-keyed", "bench-noop-keyed"
    with run.stack(label.lower()) as stack:
        worker = stack.start_worker(task)
        stack.wait_registered(task)
        stack.client.invoke_batch(task, [{"k": f"key-{i % KEYS}"} for i in range(200)])
        stack.wait_idle(task, timeout=120)
        payloads = [{"k": f"key-{i % KEYS}"} for i in range(S1_COUNT)]
        with stack.cpu_meter(worker.pid) as cpu:
            began = time.monotonic()
            ids = stack.client.invoke_batch(task, payloads)
            stack.wait_idle(task, timeout=300)
            wall = time.monotonic() - began
        done, first, last = stack.span(int(ids[0]), int(ids[-1]))
        if done != S1_COUNT:
            raise BenchError(f"{label}: {done} of {S1_COUNT} succeeded")
        drain = span_seconds(first, last)
        rate = S1_COUNT / drain
        return Result(
            label, "noop throughput, 1 running per key over 100 keys",
            f"{rate:.0f} tasks/s ({S1_COUNT} tasks, {drain:.2f} s;"
            f" {cpu.brief(S1_COUNT, 'task')})",
            {"tasks_per_s": round(rate), "tasks": S1_COUNT, "keys": KEYS,
             "drain_s": round(drain, 3), "wall_s": round(wall, 3),
             "cpu_us_per_task": cpu.per_item_us(S1_COUNT)},
        )


def s1_rate(run: Run) -> Result:
    """S1 under a rate limit of 1000/s (below what the worker alone runs): leases started
    per second over 10 s of steady state, from 2 s after the first lease (by then the burst
    of 1000 is spent)."""
    label, task = "S1-rate", "bench-noop-rated"
    with run.stack(label.lower()) as stack:
        worker = stack.start_worker(task)
        stack.wait_registered(task)
        with stack.cpu_meter(worker.pid) as cpu:
            ids = stack.client.invoke_batch(task, list(range(RATE_COUNT)))
            stack.wait_idle(task, timeout=300)
        done, first, last = stack.span(int(ids[0]), int(ids[-1]))
        if done != RATE_COUNT or first is None or last is None:
            raise BenchError(f"{label}: {done} of {RATE_COUNT} succeeded")
        start = first + timedelta(seconds=2)
        end = start + timedelta(seconds=RATE_WINDOW)
        row = stack.db.execute(
            "SELECT count(*) FILTER (WHERE started_at < %s),"
            " count(*) FILTER (WHERE started_at >= %s AND started_at < %s)"
            " FROM conductor_executions WHERE id BETWEEN %s AND %s",
            (start, start, end, int(ids[0]), int(ids[-1])),
        ).fetchone()
        assert row is not None
        burst, steady = int(row[0]), int(row[1])
        per_s = steady / RATE_WINDOW
        accuracy = per_s / RATE_LIMIT
        total = span_seconds(first, last)
        return Result(
            label, f"rate limit {RATE_LIMIT}/s accuracy",
            f"{per_s:.0f} leases/s in steady state ({accuracy:.1%} of the limit); first"
            f" 2 s {burst} (burst {RATE_LIMIT} + refill); {RATE_COUNT} in {total:.2f} s;"
            f" {cpu.brief(RATE_COUNT, 'task')}",
            {"limit_per_s": RATE_LIMIT, "steady_per_s": round(per_s, 1),
             "accuracy": round(accuracy, 4), "first_2s": burst,
             "tasks": RATE_COUNT, "total_s": round(total, 3),
             "cpu_us_per_task": cpu.per_item_us(RATE_COUNT)},
            "steady rate within 90-101% of the limit", 0.9 <= accuracy <= 1.01,
        )
