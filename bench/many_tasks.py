"""S13's module: 100 task types, as a large application defines them.

`bench-many-000` is S1's no-op (processes=2, prefetch=1024), run by S13 to compare S1 on a
worker with 100 task types; the other 99 set no option and return when their handler started
(time.time()). With BENCH_MANY_POOL=NAME every task is in the shared pool NAME (S13-shared).
"""

from __future__ import annotations

import os
import time
from typing import Any

from conductor_worker import Context, Event, task

COUNT = 100
NAMES = [f"bench-many-{i:03d}" for i in range(COUNT)]
_SHARED: dict[str, Any] = (
    {"pool": os.environ["BENCH_MANY_POOL"]} if os.environ.get("BENCH_MANY_POOL") else {})


@task(name=NAMES[0], processes=2, prefetch=1024, **_SHARED)
def many_000(event: Event, ctx: Context) -> None:
    """S13's S1: does nothing."""
    return


def _started_at(i: int) -> Any:
    def handler(event: Event, ctx: Context) -> float:
        return time.time()

    # a module-level name, as if written out by hand: pool processes import it by name
    handler.__name__ = handler.__qualname__ = f"many_{i:03d}"
    return handler


for _i in range(1, COUNT):
    globals()[f"many_{_i:03d}"] = task(name=NAMES[_i], **_SHARED)(_started_at(_i))
