"""S13: one worker with 100 task types (bench/many_tasks.py).

Figures: start-up (worker started -> all 100 registered), memory of the worker and all its
descendants (RSS and PSS) at idle and once every task has run, the latency of a task's
first run (its pool cold) against a second run, and S1 on one of the 100 tasks. Variants:
S13-spawn (CONDUCTOR_START_METHOD=spawn) and S13-shared (every task in one shared pool).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from .harness import BenchError, Result, Stack, cpu_seconds, descendants, memory_kib
from .many_tasks import NAMES
from .scenarios import S1_COUNT, Run, noop_throughput

#: cold first runs measured, each of a task that has not run before
S13_COLD = 10
#: busy cores below which the worker's process tree counts as settled
SETTLED = 0.02


def _tree(pid: int) -> list[int]:
    return [pid, *descendants(pid)]


def _settle(pid: int, timeout: float = 180.0) -> float:
    """Seconds until the worker and its descendants use (almost) no CPU for 1 s."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        pids = _tree(pid)
        before = sum(cpu_seconds(p) for p in pids)
        time.sleep(1.0)
        if sum(cpu_seconds(p) for p in pids) - before < SETTLED:
            return time.monotonic() - began
    raise BenchError(f"S13: the worker's processes still busy after {timeout:.0f} s")


def _first_run(stack: Stack, task: str) -> tuple[float, float]:
    """(invoke returned -> handler started, invoke called -> result read), in seconds."""
    called = time.time()
    execution_id = stack.client.invoke(task, 0)
    returned = time.time()
    execution = stack.client.wait(execution_id, timeout=120)
    done = time.time()
    if execution.state != "succeeded":
        raise BenchError(f"S13: {task} ended {execution.state}")
    return float(execution.result) - returned, done - called


def _memory(pid: int) -> dict[str, Any]:
    pids = _tree(pid)
    rss, pss = memory_kib(pids)
    return {"rss_mb": round(rss * 1024 / 1e6, 1), "pss_mb": round(pss * 1024 / 1e6, 1),
            "processes": len(pids)}


def s13(run: Run, variant: str = "", env: dict[str, str] | None = None) -> Result:
    label = f"S13{variant}"
    with run.stack(label.lower()) as stack:
        began = time.monotonic()
        worker = stack.start_module_worker("bench.many_tasks", env=env)
        stack.wait_registered(*NAMES, timeout=180)
        startup = time.monotonic() - began
        settled = _settle(worker.pid)
        idle = _memory(worker.pid)
        cold = [_first_run(stack, name) for name in NAMES[1:1 + S13_COLD]]
        warm = [_first_run(stack, NAMES[1]) for _ in range(S13_COLD)]
        rest = [stack.client.invoke(name, 0) for name in NAMES[1 + S13_COLD:]]
        for execution_id in rest:
            if stack.client.wait(execution_id, timeout=120).state != "succeeded":
                raise BenchError(f"S13: execution {execution_id} did not succeed")
        every = _memory(worker.pid)  # every pool has run once (within the idle timeout)
        s1 = None
        if not variant:
            s1 = noop_throughput(run, stack, worker.pid, f"{label}-S1", NAMES[0],
                                 ">= 10000 tasks/s", 10_000)
    ms = 1000.0
    figures: dict[str, Any] = {
        "task_types": len(NAMES),
        "startup_to_registered_s": round(startup, 3),
        "settled_after_s": round(settled + startup, 1),
        "idle": idle,
        "after_every_task_ran": every,
        "cold_first_run_ms": [round(c[0] * ms, 1) for c in cold],
        "cold_first_run_p50_ms": round(statistics.median(c[0] for c in cold) * ms, 1),
        "cold_first_run_max_ms": round(max(c[0] for c in cold) * ms, 1),
        "cold_invoke_to_result_max_ms": round(max(c[1] for c in cold) * ms, 1),
        "warm_run_p50_ms": round(statistics.median(w[0] for w in warm) * ms, 1),
    }
    summary = (
        f"start-up to registered {startup:.2f} s; idle {idle['rss_mb']:.0f} MB RSS /"
        f" {idle['pss_mb']:.0f} MB PSS in {idle['processes']} processes; after every task"
        f" ran {every['rss_mb']:.0f} MB RSS / {every['pss_mb']:.0f} MB PSS in"
        f" {every['processes']} processes; cold first run p50"
        f" {figures['cold_first_run_p50_ms']:.0f} ms, max {figures['cold_first_run_max_ms']:.0f}"
        f" ms (warm p50 {figures['warm_run_p50_ms']:.1f} ms)")
    met = startup <= 2 and idle["pss_mb"] <= 300 and figures["cold_first_run_max_ms"] <= 1000
    if s1 is not None:
        figures["s1"] = s1.figures
        summary += f"; S1 on bench-many-000: {s1.figures['tasks_per_s']} tasks/s"
        figures["s1_tasks"] = S1_COUNT
    return Result(label, "100 task types", summary, figures,
                  "idle <= 300 MB, start-up <= 2 s, cold first run <= 1 s", met)


MANY: dict[str, Callable[[Run], Result]] = {
    "S13": s13,
    "S13-spawn": lambda run: s13(run, "-spawn", {"CONDUCTOR_START_METHOD": "spawn"}),
    "S13-shared": lambda run: s13(run, "-shared", {"BENCH_MANY_POOL": "many"}),
}
