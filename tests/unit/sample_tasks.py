"""Module-level tasks for the pickling tests (pool processes import tasks by module + name)."""

from __future__ import annotations

from typing import Any

from conductor_worker import task


@task(name="unit-sample-plain")
def plain(event: Any, ctx: Any) -> Any:
    return {"echo": event}


@task(name="unit-sample-async", processes=2, window=("22:00", "06:00"), timezone="Europe/Berlin")
async def asynchronous(event: Any, ctx: Any) -> Any:
    return event


@task(name="unit-sample-shadowed-1")
def shadowed(event: Any, ctx: Any) -> Any:
    return 1


#: The module attribute `shadowed` now names a different task than the one defined above,
#: so the first one cannot be found again by module + qualname.
SHADOWED_FIRST = shadowed


@task(name="unit-sample-shadowed-2")
def shadowed(event: Any, ctx: Any) -> Any:
    return 2
