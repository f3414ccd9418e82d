"""The scenarios S1-S7 (S7-fanout and S8 are in bench/workflows.py). Each starts its own
scratch database, coordinator and worker(s)."""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .flow import s1_keyed, s1_rate
from .harness import (
    BenchError,
    PostgresServer,
    Result,
    Stack,
    percentile,
    rss_kib,
    span_seconds,
)
from .profiling import recording
from .workflows import s7_fanout, s8_events

S1_COUNT = 20_000
S2_COUNT = 1_000
S2_STEPS = 10
S3_COUNT = 1_000
S4_COUNT = 100_000
S4_ROUNDS = 3
S5_DEPTHS = (10_000, 1_000_000)
S5_SAMPLES = 1000
S6_QUEUED = 100_000
S6_LEASED = 2_000
S7_DELAYED = 200
S7_SPREAD = 4.0  # seconds over which the delayed executions' run times are spread
S7_RETRIED = 20


@dataclass
class Run:
    """What the scenarios share within one run of the benchmark."""

    server: PostgresServer
    logs: Path
    profile: Path | None = None
    profile_native: bool = False

    def stack(self, label: str, *coordinator_args: str) -> Stack:
        return Stack(self.server, label, self.logs, coordinator_args)

    def recording(self, label: str, stack: Stack, worker: int) -> Any:
        """py-spy on the coordinator and the worker while the block runs (with --profile)."""
        pids = {"coordinator": stack.coordinator_pid, "worker": worker}
        return recording(self.profile, label, pids, self.profile_native)


# -- S1 ----------------------------------------------------------------------------------


def s1_noop(run: Run) -> Result:
    """20,000 no-op executions from one InvokeBatch, drained by one worker with 2 pool
    processes (prefetch 1024); tasks/s from the first lease to the last completion."""
    return _noop(run, "S1", "bench-noop", ">= 10000 tasks/s", 10_000)


def s1_default(run: Run) -> Result:
    """S1 with a task that sets only its name and processes=2 (adaptive prefetch)."""
    return _noop(run, "S1-default", "bench-noop-default", ">= 10000 tasks/s", 10_000)


def s1_batch(run: Run) -> Result:
    """S1 with a batch handler (batch=100, batch_wait=0.05): each execution keeps its own
    lease and result, the handler call and the pipe hand-over are shared by 100."""
    return _noop(run, "S1-batch", "bench-noop-batch", ">= S1", 10_000)


def s1_timeout(run: Run) -> Result:
    """S1 with an execution timeout (60 s) on the task: every run is timed, and a task with
    a timeout does not prefetch."""
    return _noop(run, "S1-timeout", "bench-noop-timeout", "(cost of timeouts)", 0)


def _noop(run: Run, label: str, task: str, target: str, goal: float) -> Result:
    with run.stack(label.lower()) as stack:
        worker = stack.start_worker(task)
        stack.wait_registered(task)
        return noop_throughput(run, stack, worker.pid, label, task, target, goal)


def noop_throughput(run: Run, stack: Stack, worker: int, label: str, task: str,
                    target: str, goal: float) -> Result:
    """S1's measurement on a running worker: 20,000 executions of a no-op task."""
    stack.warm_up(task, 200)
    with run.recording(label, stack, worker), stack.cpu_meter(worker) as cpu:
        began = time.monotonic()
        ids = stack.client.invoke_batch(task, list(range(S1_COUNT)))
        enqueued = time.monotonic() - began
        stack.wait_idle(task, timeout=180)
        wall = time.monotonic() - began
    done, first, last = stack.span(int(ids[0]), int(ids[-1]))
    if done != S1_COUNT:
        raise BenchError(f"{label}: {done} of {S1_COUNT} succeeded")
    drain = span_seconds(first, last)
    rate = S1_COUNT / drain
    return Result(
        label, "noop throughput",
        f"{rate:.0f} tasks/s ({S1_COUNT} tasks, {drain:.2f} s; {cpu.brief(S1_COUNT, 'task')})",
        {"tasks_per_s": round(rate), "tasks": S1_COUNT, "drain_s": round(drain, 3),
         "invoke_batch_s": round(enqueued, 3), "wall_s": round(wall, 3),
         "cpu_us_per_task": cpu.per_item_us(S1_COUNT)},
        target, rate >= goal,
    )


# -- S2 ----------------------------------------------------------------------------------


def s2_steps(run: Run) -> Result:
    """1,000 executions of 10 ctx.step calls each, by an `async def` handler (128 runs at a
    time per pool process, 2 processes); steps/s from the first lease to the last completion."""
    return _steps(run, "S2", "steps", "bench-steps", ">= 20000 steps/s")


def s2_sync_steps(run: Run) -> Result:
    """S2 with a plain `def` handler on 128 threads per pool process (S2's concurrency), so
    what it shows next to S2 is the cost of the thread hand-offs."""
    return _steps(run, "S2-sync", "steps, plain handler", "bench-steps-sync",
                  ">= 20000 steps/s")


def _steps(run: Run, label: str, title: str, task: str, target: str | None) -> Result:
    with run.stack(label.lower()) as stack:
        worker = stack.start_worker(task)
        stack.wait_registered(task)
        stack.warm_up(task, 20)
        with run.recording(label, stack, worker.pid), \
                stack.cpu_meter(worker.pid) as cpu:
            ids = stack.client.invoke_batch(task, list(range(S2_COUNT)))
            stack.wait_idle(task, timeout=180)
        done, first, last = stack.span(int(ids[0]), int(ids[-1]))
        row = stack.db.execute(
            "SELECT count(*) FROM conductor_steps WHERE execution_id BETWEEN %s AND %s",
            (int(ids[0]), int(ids[-1])),
        ).fetchone()
        saved = int(row[0]) if row else 0
    steps = S2_COUNT * S2_STEPS
    if done != S2_COUNT or saved != steps:
        raise BenchError(
            f"{label}: {done} of {S2_COUNT} succeeded, {saved} of {steps} steps saved"
        )
    drain = span_seconds(first, last)
    rate = steps / drain
    return Result(
        label, title,
        f"{rate:.0f} steps/s ({S2_COUNT} executions x {S2_STEPS} steps, {drain:.2f} s;"
        f" {S2_COUNT / drain:.0f} executions/s; {cpu.brief(steps, 'step')})",
        {"steps_per_s": round(rate), "steps": steps, "executions": S2_COUNT,
         "drain_s": round(drain, 3), "cpu_us_per_step": cpu.per_item_us(steps)},
        target, None if target is None else rate >= 20_000,
    )


# -- S3 and S5: invoke -> handler start --------------------------------------------------


def dispatch_latencies(stack: Stack, task: str, n: int) -> dict[str, Any]:
    """`n` sequential invokes, each waited for; latency = the handler's time.time() at start
    minus the client's time.time() right after Invoke returned (one machine, one clock)."""
    after: list[float] = []
    before: list[float] = []
    queued: list[float] = []  # created_at -> started_at (the lease pass), coordinator clock
    delivered: list[float] = []  # started_at -> handler start
    for i in range(n):
        called = time.time()
        execution_id = stack.client.invoke(task, i)
        returned = time.time()
        execution = stack.client.wait(execution_id, timeout=60)
        if execution.state != "succeeded":
            raise BenchError(f"{task}: execution {execution_id} ended {execution.state}")
        started = float(execution.result)
        after.append(started - returned)
        before.append(started - called)
        if execution.created_at and execution.started_at:
            leased = execution.started_at.timestamp()
            queued.append(leased - execution.created_at.timestamp())
            delivered.append(started - leased)
    ms = 1000.0
    return {
        "samples": n,
        "p50_ms": round(percentile(after, 50) * ms, 3),
        "p99_ms": round(percentile(after, 99) * ms, 3),
        "max_ms": round(max(after) * ms, 3),
        "over_100ms": sum(1 for a in after if a > 0.1),
        "started_before_invoke_returned": sum(1 for a in after if a < 0),
        "from_invoke_call_p50_ms": round(percentile(before, 50) * ms, 3),
        "from_invoke_call_p99_ms": round(percentile(before, 99) * ms, 3),
        "created_to_lease_pass_p50_ms": round(percentile(queued, 50) * ms, 3),
        "lease_pass_to_handler_p50_ms": round(percentile(delivered, 50) * ms, 3),
    }


def s3_latency(run: Run) -> Result:
    """1,000 sequential invokes at idle; invoke returned -> handler started, p50 and p99."""
    task = "bench-latency"
    with run.stack("s3") as stack:
        worker = stack.start_worker(task)
        stack.wait_registered(task)
        stack.warm_up(task, 20)
        dispatch_latencies(stack, task, 20)
        with run.recording("S3", stack, worker.pid), \
                stack.cpu_meter(worker.pid) as cpu:
            figures = dispatch_latencies(stack, task, S3_COUNT)
        figures["cpu_us_per_invoke"] = cpu.per_item_us(S3_COUNT)
    p50, p99 = figures["p50_ms"], figures["p99_ms"]
    return Result(
        "S3", "dispatch latency at idle",
        f"p50 {p50:.2f} ms, p99 {p99:.2f} ms ({S3_COUNT} sequential invokes;"
        f" max {figures['max_ms']:.1f} ms, {figures['over_100ms']} over 100 ms)",
        figures, "p50 <= 3 ms and p99 <= 15 ms", p50 <= 3 and p99 <= 15,
    )


def _queue_backlog(stack: Stack, task: str, n: int) -> None:
    """Add `n` ready executions of `task` with one INSERT ... SELECT generate_series."""
    stack.db.execute(
        "INSERT INTO conductor_executions (task, run_at, created_at, max_attempts)"
        " SELECT %s, now(), now(), 3 FROM generate_series(1, %s)",
        (task, n),
    )
    stack.db.execute("VACUUM (ANALYZE) conductor_executions")  # steady state, no autovacuum


def s5_depth(run: Run) -> Result:
    """Dispatch latency of one task with 10,000 and then 1,000,000 ready executions of
    another task queued (registered, no worker for it)."""
    task, other = "bench-latency", "bench-backlog"
    by_depth: dict[int, dict[str, Any]] = {}
    with run.stack("s5") as stack:
        registrar = stack.start_worker(other)  # registers the task, then leaves
        stack.wait_registered(other)
        stack.stop_worker(registrar)
        stack.start_worker(task)
        stack.wait_registered(task)
        stack.warm_up(task, 20)
        queued = 0
        for depth in S5_DEPTHS:
            began = time.monotonic()
            _queue_backlog(stack, other, depth - queued)
            queued = depth
            fill = time.monotonic() - began
            if stack.count(other, "pending") != depth:
                raise BenchError(f"S5: {other} backlog is not {depth}")
            dispatch_latencies(stack, task, 20)
            by_depth[depth] = {**dispatch_latencies(stack, task, S5_SAMPLES),
                               "fill_s": round(fill, 2)}
    low, high = (by_depth[d] for d in S5_DEPTHS)
    ratio50 = high["p50_ms"] / low["p50_ms"]
    ratio99 = high["p99_ms"] / low["p99_ms"]
    return Result(
        "S5", "depth",
        f"p50 {low['p50_ms']:.2f} -> {high['p50_ms']:.2f} ms ({ratio50:.2f}x),"
        f" p99 {low['p99_ms']:.2f} -> {high['p99_ms']:.2f} ms ({ratio99:.2f}x)"
        f" with {S5_DEPTHS[0]} -> {S5_DEPTHS[1]} ready executions queued"
        f" ({S5_SAMPLES} samples each; max {low['max_ms']:.1f} / {high['max_ms']:.1f} ms)",
        {"depths": {str(d): v for d, v in by_depth.items()},
         "p50_ratio": round(ratio50, 3), "p99_ratio": round(ratio99, 3)},
        "p50 and p99 within 2x", ratio50 <= 2 and ratio99 <= 2,
    )


# -- S4 ----------------------------------------------------------------------------------


def s4_enqueue(run: Run) -> Result:
    """InvokeBatch of 100,000 executions (task registered, no worker running); the median
    of 3 calls, timed at the client from call to response."""
    task = "bench-noop"
    rates: list[float] = []
    seconds: list[float] = []
    with run.stack("s4") as stack:
        registrar = stack.start_worker(task)
        stack.wait_registered(task)
        stack.stop_worker(registrar)
        stack.client.invoke_batch(task, list(range(1000)))  # warm the call path
        for _ in range(S4_ROUNDS):
            payloads = list(range(S4_COUNT))
            began = time.monotonic()
            ids = stack.client.invoke_batch(task, payloads)
            took = time.monotonic() - began
            if len(ids) != S4_COUNT:
                raise BenchError(f"S4: {len(ids)} ids for {S4_COUNT} payloads")
            seconds.append(took)
            rates.append(S4_COUNT / took)
    rate = statistics.median(rates)
    return Result(
        "S4", "enqueue",
        f"{rate:.0f} executions/s (InvokeBatch of {S4_COUNT}, median of {S4_ROUNDS}:"
        f" {', '.join(f'{s:.2f}' for s in seconds)} s)",
        {"executions_per_s": round(rate), "batch": S4_COUNT,
         "seconds": [round(s, 3) for s in seconds],
         "executions_per_s_each": [round(r) for r in rates]},
        ">= 50000/s", rate >= 50_000,
    )


# -- S6 ----------------------------------------------------------------------------------


def s6_memory(run: Run) -> Result:
    """Coordinator RSS with 100,000 executions queued and 2,000 leased (one worker holding
    2,000 leases of a task that does not finish)."""
    task = "bench-hold"
    total = S6_QUEUED + S6_LEASED
    with run.stack("s6") as stack:
        pid = stack.coordinator_pid
        idle_rss, _ = rss_kib(pid)
        stack.start_worker(task)
        stack.wait_registered(task)
        for offset in range(0, total, 100_000):
            stack.client.invoke_batch(task, list(range(offset, min(total, offset + 100_000))))
        deadline = time.monotonic() + 60
        while stack.count(task, "running") < S6_LEASED:
            stack.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(f"S6: only {stack.count(task, 'running')} leased after 60 s")
            time.sleep(0.1)
        time.sleep(2.0)  # let the coordinator settle (batches acknowledged, buffers freed)
        running, pending = stack.count(task, "running"), stack.count(task, "pending")
        samples = []
        for _ in range(5):
            samples.append(rss_kib(pid))
            time.sleep(0.2)
        rss = max(s[0] for s in samples)
        hwm = max(s[1] for s in samples)
    mb = rss * 1024 / 1e6  # MB of 10^6 bytes, as the target says
    return Result(
        "S6", "memory",
        f"coordinator RSS {mb:.0f} MB with {pending} queued and {running} leased"
        f" (idle {idle_rss * 1024 / 1e6:.0f} MB, peak {hwm * 1024 / 1e6:.0f} MB)",
        {"rss_mb": round(mb, 1), "peak_rss_mb": round(hwm * 1024 / 1e6, 1),
         "idle_rss_mb": round(idle_rss * 1024 / 1e6, 1), "queued": pending, "leased": running},
        "<= 300 MB", mb <= 300,
    )


def s7_wakeups(run: Run) -> Result:
    """Delayed work and retries start on time: 200 single invokes with delays spread over
    4 s (lateness = handler start - invoke return - delay), and 20 executions that fail three
    attempts with a fixed 0.2 s backoff (lateness = next attempt's start - 0.2 s - when the
    failed attempt's step was recorded, just before it failed: an upper bound)."""
    with run.stack("s7") as stack:
        stack.start_worker("bench-latency", "bench-retry")
        stack.wait_registered("bench-latency", "bench-retry")
        stack.warm_up("bench-latency", 20)
        invoked: list[tuple[str, float]] = []
        for i in range(S7_DELAYED):
            delay = S7_SPREAD * (i * 7919 % S7_DELAYED) / S7_DELAYED  # spread, not in order
            execution_id = stack.client.invoke("bench-latency", i, delay=delay)
            invoked.append((execution_id, time.time() + delay))
        retried = [stack.client.invoke("bench-retry", i) for i in range(S7_RETRIED)]
        delayed_late = []
        for execution_id, due in invoked:
            execution = stack.client.wait(execution_id, timeout=60)
            if execution.state != "succeeded":
                raise BenchError(f"S7: execution {execution_id} ended {execution.state}")
            delayed_late.append(float(execution.result) - due)
        retry_late = []
        for execution_id in retried:
            execution = stack.client.wait(execution_id, timeout=60)
            if execution.state != "succeeded":
                raise BenchError(f"S7: execution {execution_id} ended {execution.state}")
            # each attempt's step: when it started (result) and was recorded (saved_at, just
            # before the attempt failed); the next attempt is due 0.2 s after the failure
            steps = sorted(stack.client.steps(execution_id), key=lambda s: float(s.result))
            retry_late += [float(b.result) - a.saved_at.timestamp() - 0.2
                           for a, b in itertools.pairwise(steps)]
    ms = 1000.0
    figures = {
        "delayed": S7_DELAYED,
        "delayed_late_p50_ms": round(percentile(delayed_late, 50) * ms, 2),
        "delayed_late_p99_ms": round(percentile(delayed_late, 99) * ms, 2),
        "delayed_late_max_ms": round(max(delayed_late) * ms, 2),
        "retries": len(retry_late),
        "retry_late_p50_ms": round(percentile(retry_late, 50) * ms, 2),
        "retry_late_p99_ms": round(percentile(retry_late, 99) * ms, 2),
        "retry_late_max_ms": round(max(retry_late) * ms, 2),
    }
    worst = max(figures["delayed_late_max_ms"], figures["retry_late_max_ms"])
    return Result(
        "S7", "wake-ups on time",
        f"delayed work late by p50 {figures['delayed_late_p50_ms']:.1f} ms, p99"
        f" {figures['delayed_late_p99_ms']:.1f} ms, max {figures['delayed_late_max_ms']:.1f} ms"
        f" ({S7_DELAYED} invokes over {S7_SPREAD:.0f} s); retries late by p50"
        f" {figures['retry_late_p50_ms']:.1f} ms, p99 {figures['retry_late_p99_ms']:.1f} ms,"
        f" max {figures['retry_late_max_ms']:.1f} ms ({len(retry_late)} retries)",
        figures, "every start within 50 ms of its time", worst <= 50,
    )


SCENARIOS: dict[str, Callable[[Run], Result]] = {
    "S1": s1_noop,
    "S1-default": s1_default,
    "S1-batch": s1_batch,
    "S1-timeout": s1_timeout,
    "S1-keyed": s1_keyed,
    "S1-rate": s1_rate,
    "S2": s2_steps,
    "S2-sync": s2_sync_steps,
    "S3": s3_latency,
    "S4": s4_enqueue,
    "S5": s5_depth,
    "S6": s6_memory,
    "S7": s7_wakeups,
    "S7-fanout": s7_fanout,
    "S8": s8_events,
}
