"""CPU cost of a pool's hand-over, without processes: submit -> _assign -> _finish, for quick
runs (16 per child queued), 2 stand-in children. Runs on this tree's conductor_worker, or on
an older one's (its Pool signature is tried too), to compare versions:

    cd TREE && python -m bench.handover      # (copy this file into TREE/bench first)
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from conductor_worker import pool as pool_module
from conductor_worker.context import RunSpec
from tests.unit import sample_tasks

RUNS = 200_000
BATCH = 32


class _Process:
    pid = None
    exitcode = None


def _pool() -> Any:
    try:
        pool: Any = pool_module.Pool([sample_tasks.plain], lambda m: None)  # type: ignore[arg-type]
    except TypeError:  # before #18: Pool(task, processes, handler)
        pool = pool_module.Pool(sample_tasks.plain, 2, lambda m: None)  # type: ignore[arg-type]
    pool.processes = 2
    pool._loop = asyncio.new_event_loop()
    for _ in range(2):
        child = pool_module._Child(_Process(), None)  # type: ignore[arg-type]
        child.send = lambda message: None  # type: ignore[method-assign]
        pool.children.append(child)
    return pool


def main() -> None:
    pool = _pool()
    specs = [RunSpec(execution_id=str(i), token="t", task=sample_tasks.plain.name, attempt=1,
                     max_attempts=3, payload_json="{}", steps={}) for i in range(RUNS)]
    best = float("inf")
    for _ in range(5):
        pool._run_seconds = 0.001  # quick runs
        began = time.process_time()
        for i in range(0, RUNS, BATCH):
            batch = specs[i:i + BATCH]
            for spec in batch:
                pool.submit(spec)
            for spec in batch:
                pool._finish(pool._where[spec.key], spec.key)
        best = min(best, time.process_time() - began)
    print(f"{best / RUNS * 1e6:.2f} us of CPU per run handed over and finished"
          f" (best of 5 rounds of {RUNS})")


if __name__ == "__main__":
    main()
