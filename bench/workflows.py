"""Workflow scenarios: S7-fanout (a parent invoking 1,000 children with invoke_many, and
child-done -> parent-resumed latency) and S8 (emit -> subscribed handler start latency).

(S7 is the wake-ups scenario of bench/scenarios.py; the fan-out one is named S7-fanout.)
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .harness import BenchError, Result, Stack, percentile, span_seconds

if TYPE_CHECKING:
    from .scenarios import Run

FANOUT_CHILDREN = 1_000
FANOUT_ROUNDS = 3
RESUMES = 100
S8_EMITS = 1_000


def s7_fanout(run: Run) -> Result:
    """A parent invokes 1,000 no-op children with one invoke_many and waits for them: the
    parent's start (first lease) to its end, best of three; then 100 sequential ctx.invoke
    calls in one parent: a child's end -> its parent's run resumed, p50 and p99."""
    with run.stack("s7-fanout") as stack:
        tasks = ("bench-fan-parent", "bench-fan-child", "bench-resume-parent",
                 "bench-child-time")
        stack.start_worker(*tasks)
        stack.wait_registered(*tasks)
        stack.warm_up("bench-fan-child", 200)
        spans = []
        for _ in range(FANOUT_ROUNDS):
            parent = stack.client.invoke("bench-fan-parent", FANOUT_CHILDREN)
            done = stack.client.wait(parent, timeout=300)
            if done.state != "succeeded" or done.result != FANOUT_CHILDREN:
                raise BenchError(f"S7-fanout: parent {parent} ended {done.state}")
            spans.append(span_seconds(done.started_at, done.finished_at))
        parent = stack.client.invoke("bench-resume-parent", RESUMES)
        done = stack.client.wait(parent, timeout=300)
        if done.state != "succeeded":
            raise BenchError(f"S7-fanout: resume parent {parent} ended {done.state}")
        steps = {s.name: s.result for s in stack.client.steps(parent)}
        resumed = [steps[f"r{k}"] - steps[f"c{k}"]["children"][0]["result"]
                   for k in range(RESUMES)]
    ms = 1000.0
    figures = {
        "children": FANOUT_CHILDREN,
        "fanout_best_s": round(min(spans), 3),
        "fanout_rounds_s": [round(s, 3) for s in spans],
        "resumes": RESUMES,
        "resume_p50_ms": round(percentile(resumed, 50) * ms, 2),
        "resume_p99_ms": round(percentile(resumed, 99) * ms, 2),
    }
    best = figures["fanout_best_s"]
    return Result(
        "S7-fanout", "fan-out/fan-in",
        f"{FANOUT_CHILDREN} children via invoke_many: parent start to done {best:.3f} s (best"
        f" of {FANOUT_ROUNDS}: {figures['fanout_rounds_s']}); child done -> parent resumed"
        f" p50 {figures['resume_p50_ms']:.1f} ms, p99 {figures['resume_p99_ms']:.1f} ms"
        f" ({RESUMES} sequential invokes)",
        figures, "parent start to done <= 0.5 s", best <= 0.5,
    )


def s8_events(run: Run) -> Result:
    """1,000 sequential emits of an event one task subscribes to: Emit returned -> the
    subscribed handler started, p50 and p99 (one machine, one clock)."""
    with run.stack("s8") as stack:
        stack.start_worker("bench-on-event")
        stack.wait_registered("bench-on-event")
        _wait_subscribed(stack, "bench-on-event")
        for i in range(20):  # warm up
            _emit_latency(stack, i)
        latencies = [_emit_latency(stack, i) for i in range(S8_EMITS)]
    ms = 1000.0
    figures = {
        "emits": S8_EMITS,
        "p50_ms": round(percentile(latencies, 50) * ms, 3),
        "p99_ms": round(percentile(latencies, 99) * ms, 3),
        "max_ms": round(max(latencies) * ms, 3),
    }
    p50, p99 = figures["p50_ms"], figures["p99_ms"]
    return Result(
        "S8", "event latency",
        f"emit -> subscribed handler start p50 {p50:.2f} ms, p99 {p99:.2f} ms"
        f" ({S8_EMITS} sequential emits; max {figures['max_ms']:.1f} ms)",
        figures, "p50 <= 5 ms and p99 <= 20 ms", p50 <= 5 and p99 <= 20,
    )


def _emit_latency(stack: Stack, i: int) -> float:
    client = stack.client
    (execution_id,) = client.emit("bench.event", i)
    returned = time.time()
    execution = client.wait(execution_id, timeout=60)
    if execution.state != "succeeded":
        raise BenchError(f"S8: execution {execution_id} ended {execution.state}")
    return float(execution.result) - returned


def _wait_subscribed(stack: Stack, task: str, timeout: float = 60.0) -> None:
    """Until the task's subscriptions are written (just after its row, at registration)."""
    deadline = time.monotonic() + timeout
    query = "SELECT count(*) FROM conductor_subscriptions WHERE task = %s"
    while not (stack.db.execute(query, (task,)).fetchone() or (0,))[0]:
        if time.monotonic() > deadline:
            raise BenchError(f"S8: {task} not subscribed after {timeout}s")
        time.sleep(0.05)
