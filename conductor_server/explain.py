"""Why a pending execution is not running (GetExecution's `explanation`).

The checks go in the order an operator would look: what the execution itself waits for
(children, an event, a signal, its run_at), then its task (window, connected workers and
queues, rate limit and pauses, its key's cap, the global cap). The first that holds is the
answer; when none does, it is ready and goes to the next worker with room.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from .models import Execution, State, TaskDef
from .store import Store
from .windows import next_opening


class Reason(enum.Enum):
    """Mirrors conductor.v1.ExplanationReason."""

    READY = 1
    RUN_AT = 2
    WINDOW = 3
    CONCURRENCY = 4
    KEY_CONCURRENCY = 5
    RATE_LIMITED = 6
    NO_WORKER = 7
    WAITING_CHILDREN = 8
    WAITING_EVENT = 9
    WAITING_SIGNAL = 10


@dataclass(frozen=True)
class Explanation:
    reason: Reason
    message: str
    until: datetime | None = None
    execution_ids: tuple[int, ...] = ()


def _ids(ids: list[int], total: int) -> str:
    shown = ", ".join(str(i) for i in ids)
    return shown + (f" and {total - len(ids)} more" if total > len(ids) else "")


async def explain(
    store: Store, task: TaskDef | None, e: Execution, now: datetime, seen_after: datetime
) -> Explanation | None:
    """Why `e` (pending) is not running; None for other states."""
    if e.state is not State.PENDING:
        return None
    if e.waiting_for:
        return await _waiting(store, e, e.waiting_for)
    if e.run_at > now:
        return Explanation(Reason.RUN_AT, f"not before its run_at, {e.run_at.isoformat()}",
                           until=e.run_at)
    if task is None:
        return Explanation(Reason.NO_WORKER, f"no worker has registered task {e.task!r}")
    opening = next_opening(task, now)
    if opening is not None:
        return Explanation(Reason.WINDOW, f"outside its task's window {task.window_start}-"
                           f"{task.window_end} ({task.timezone}); it opens at"
                           f" {opening.isoformat()}", until=opening)
    if not await store.worker_serves(e.task, e.queue, seen_after):
        return Explanation(Reason.NO_WORKER, f"no connected worker runs task {e.task!r} and"
                           f" takes work from queue {e.queue!r}")
    key = (e.concurrency_key or "") if task.keyed else ""
    limited = await _rate(store, task, key, now)
    return limited or await _caps(store, task, e, key)


async def _waiting(store: Store, e: Execution, waiting_for: str) -> Explanation:
    kind, _, step = waiting_for.partition(":")
    if kind == "children":
        children = await store.unfinished_children(e.id, step)
        return Explanation(Reason.WAITING_CHILDREN, f"waiting for its child executions"
                           f" of step {step!r}: {_ids(children, len(children))}",
                           execution_ids=tuple(children))
    name = step.removeprefix(kind + ":")  # their wait steps are named "signal:NAME" etc.
    if kind == "event":
        return Explanation(Reason.WAITING_EVENT, f"waiting for an event (step {name!r})")
    return Explanation(Reason.WAITING_SIGNAL, f"waiting for a signal (step {name!r})")


async def _caps(store: Store, task: TaskDef, e: Execution, key: str) -> Explanation:
    if task.key_concurrency > 0 and key:
        holders, running = await store.running_holders(e.task, key)
        if running >= task.key_concurrency:
            return Explanation(Reason.KEY_CONCURRENCY, f"key {key!r} is full: {running} of"
                               f" {task.key_concurrency} running ({_ids(holders, running)})",
                               execution_ids=tuple(holders))
    if task.concurrency > 0:
        holders, running = await store.running_holders(e.task, None)
        if running >= task.concurrency:
            return Explanation(Reason.CONCURRENCY, f"task {e.task!r} is at its concurrency cap:"
                               f" {running} of {task.concurrency} running"
                               f" ({_ids(holders, running)})", execution_ids=tuple(holders))
    return Explanation(Reason.READY, "ready: it goes to the next worker with room (in"
                       " priority order, then oldest first)")


async def _rate(store: Store, task: TaskDef, key: str, now: datetime) -> Explanation | None:
    tokens, paused = await store.bucket_state(
        task.bucket, key, task.rate_count, task.rate_period, now)
    whose = f"rate limit {task.bucket!r}" + (f" for key {key!r}" if key else "")
    if paused is not None and paused > now:
        return Explanation(Reason.RATE_LIMITED, f"{whose} is paused by RateLimited until"
                           f" {paused.isoformat()}", until=paused)
    if task.rate_count > 0 and tokens is not None and tokens < 1:
        wait = (1 - tokens) * task.rate_period / task.rate_count
        until = now + timedelta(seconds=math.ceil(wait * 1000) / 1000)
        return Explanation(Reason.RATE_LIMITED, f"{whose} ({task.rate_count} per"
                           f" {task.rate_period:g} s) has no room until {until.isoformat()}",
                           until=until)
    return None
