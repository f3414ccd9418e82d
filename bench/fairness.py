"""S11 (fairness over workers) and S12 (priority under load)."""

from __future__ import annotations

import time

from .harness import BenchError, Result, Stack, percentile, span_seconds
from .scenarios import S1_COUNT, Run

S11_TASKS = 200
S11_SECONDS = 0.5
S11_WORKERS = 2
S11_PROCESSES = 2  # bench-half-second's processes
S11_MANY = 4  # workers in the S1 half
S12_BACKLOG = 100_000
S12_EVERY = 0.05  # seconds between high-priority invokes while the backlog drains
S12_PRIORITY = 10


def s11_fairness(run: Run) -> Result:
    """Work spread over workers: 2 workers x 2 processes drain 200 runs of 0.5 s (nothing
    tuned): makespan against the ideal 25 s; and S1's drain with 4 workers against 1."""
    makespan, per_worker = _long_runs(run)
    ideal = S11_TASKS * S11_SECONDS / (S11_WORKERS * S11_PROCESSES)
    one = _noop_drain(run, 1)
    many = _noop_drain(run, S11_MANY)
    over = makespan / ideal - 1
    figures = {
        "makespan_s": round(makespan, 2), "ideal_s": ideal,
        "over_ideal_pct": round(100 * over, 1), "runs_per_worker": per_worker,
        "s1_one_worker_tasks_per_s": round(one), "s1_four_workers_tasks_per_s": round(many),
        "four_over_one": round(many / one, 2),
    }
    return Result(
        "S11", "fairness",
        f"{S11_TASKS} runs of {S11_SECONDS} s on {S11_WORKERS} workers x {S11_PROCESSES}"
        f" processes: makespan {makespan:.2f} s (ideal {ideal:.0f} s, {100 * over:+.1f}%;"
        f" runs per worker {per_worker}); S1 with {S11_MANY} workers {many:.0f} tasks/s"
        f" against {one:.0f} with 1 ({many / one:.2f}x)",
        figures, "makespan within 15% of ideal; 4 workers >= 1 worker",
        over <= 0.15 and many >= one,
    )


def _long_runs(run: Run) -> tuple[float, list[int]]:
    task = "bench-half-second"
    with run.stack("s11-long") as stack:
        for _ in range(S11_WORKERS):
            stack.start_worker(task)
        _wait_workers(stack, S11_WORKERS)
        ids = stack.client.invoke_batch(task, list(range(S11_TASKS)))
        stack.wait_idle(task, timeout=300)
        done, first, last = stack.span(int(ids[0]), int(ids[-1]))
        rows = stack.db.execute(
            "SELECT count(*) FROM conductor_executions WHERE id BETWEEN %s AND %s"
            " GROUP BY worker_id ORDER BY 1 DESC", (int(ids[0]), int(ids[-1])),
        ).fetchall()
    if done != S11_TASKS:
        raise BenchError(f"S11: {done} of {S11_TASKS} succeeded")
    return span_seconds(first, last), [int(r[0]) for r in rows]


def _noop_drain(run: Run, workers: int) -> float:
    """S1's drain (the tuned no-op) with `workers` workers; tasks/s."""
    task = "bench-noop"
    with run.stack(f"s11-s1-{workers}") as stack:
        for _ in range(workers):
            stack.start_worker(task)
        _wait_workers(stack, workers)
        stack.warm_up(task, 200 * workers)
        ids = stack.client.invoke_batch(task, list(range(S1_COUNT)))
        stack.wait_idle(task, timeout=300)
        done, first, last = stack.span(int(ids[0]), int(ids[-1]))
    if done != S1_COUNT:
        raise BenchError(f"S11: {done} of {S1_COUNT} succeeded with {workers} workers")
    return S1_COUNT / span_seconds(first, last)


def _wait_workers(stack: Stack, n: int, timeout: float = 60.0) -> None:
    """Until `n` workers are connected (ListWorkers)."""
    deadline = time.monotonic() + timeout
    while len(stack.client.workers()) < n:
        stack.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"{n} workers not connected after {timeout}s")
        time.sleep(0.05)


def s12_priority(run: Run) -> Result:
    """Priority under load: while 100,000 no-ops (nothing tuned) drain, a high-priority
    invoke of the same task every 50 ms; invoke returned -> handler started, p50 / p99."""
    task = "bench-priority"
    with run.stack("s12") as stack:
        stack.start_worker(task)
        stack.wait_registered(task)
        stack.warm_up(task, 200)
        backlog = stack.client.invoke_batch(task, [0] * S12_BACKLOG)
        sampled: list[tuple[str, float]] = []
        while stack.count(task, "pending") > S12_BACKLOG // 20:
            stack.check_alive()
            execution_id = stack.client.invoke(task, 1, priority=S12_PRIORITY)
            sampled.append((execution_id, time.time()))
            time.sleep(S12_EVERY)
        stack.wait_idle(task, timeout=300)
        done, first, last = stack.span(int(backlog[0]), int(backlog[-1]))
        latencies = []
        for execution_id, returned in sampled:
            execution = stack.client.get(execution_id)
            if execution.state != "succeeded":
                raise BenchError(f"S12: execution {execution_id} ended {execution.state}")
            latencies.append(float(execution.result) - returned)
    if not latencies:
        raise BenchError("S12: the backlog drained before any sample")
    p50, p99 = (percentile(latencies, p) * 1000 for p in (50, 99))
    rate = done / span_seconds(first, last)
    return Result(
        "S12", "priority under load",
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(latencies) * 1000:.1f} ms"
        f" ({len(latencies)} high-priority invokes while {S12_BACKLOG} no-ops drained at"
        f" {rate:.0f} tasks/s)",
        {"samples": len(latencies), "p50_ms": round(p50, 2), "p99_ms": round(p99, 2),
         "max_ms": round(max(latencies) * 1000, 2), "backlog": S12_BACKLOG,
         "backlog_tasks_per_s": round(rate)},
        "p99 <= 50 ms", p99 <= 50,
    )
