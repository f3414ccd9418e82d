"""100 task types without options, as a large application defines them (test_pools.py)."""

from __future__ import annotations

from typing import Any

from conductor_worker import Context, Event, task

COUNT = 100


def _handler(i: int) -> Any:
    def handler(event: Event, ctx: Context) -> dict[str, Any]:
        return {"task": i, "echo": event.payload}

    # a module-level name, as if written out by hand: pool processes import it by name
    handler.__name__ = handler.__qualname__ = f"task_{i:03d}"
    return handler


for _i in range(COUNT):
    globals()[f"task_{_i:03d}"] = task(name=f"many-{_i:03d}")(_handler(_i))
