"""Batch handlers: `@task(batch=100, batch_wait=0.5)` runs up to 100 executions per call.

Every item stays its own execution with its own lease: its own result, attempts, retries and
fencing. The pool gathers a batch task's leases (`Gathering`) until it has `batch` of them or
the first has waited `batch_wait` seconds, and hands them to one pool process as one run (a
RunSpec whose `items` are the leases). The handler gets a list of events and returns a list
of results of the same length; an item fails alone when its result is an exception
(`BatchContext.fail(i, error)` does the same), and only failed items are retried. When the
handler raises, or its process dies or times out, every item of the batch fails that way.
A handler annotated `list[Event[X]]` gets each payload parsed into X; an item whose payload
does not fit fails alone (InvalidPayload) and is left out of the list. `ctx.logger_for(i)`
records log lines on item i's execution, as `ctx.logger` does for a plain handler.

This runs in the pool process (`run_batch`, `run_batch_async`) and in the worker's pool
(`Gathering`, `batch_of`); nothing here touches gRPC or the database.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import traceback
from collections.abc import Callable
from typing import Any

from .context import Event, Link, RunKey, RunLogger, RunSpec, encode_result
from .errors import InvalidResult, NonRetryableError
from .typed import parse_payload

log = logging.getLogger(__name__)

#: the most items one batch may hold
MAX_BATCH = 1000
#: the longest batch_wait, in seconds
MAX_BATCH_WAIT = 60.0


class BatchContext:
    """What a batch handler gets besides its events: `fail(i, error)`, `logger_for(i)` and
    a logger.

    A batch handler has no steps, sleeps or checkpoints (those belong to one execution);
    split work that needs them into a task of its own."""

    def __init__(self, items: list[RunSpec], task: str, link: Link) -> None:
        self.size = len(items)
        #: the pool process's logger: lines about the whole batch, kept in the worker's log
        #: only (not recorded on any execution; logger_for(i) records on item i)
        self.logger = logging.getLogger(f"conductor.task.{task}")
        self._items = items
        self._link = link
        self._loggers: dict[int, RunLogger] = {}
        self._failed: dict[int, BaseException] = {}

    def _check(self, what: str, index: object) -> int:
        if isinstance(index, bool) or not isinstance(index, int) or not (
            0 <= index < self.size
        ):
            raise IndexError(f"ctx.{what}: index {index!r} is not in 0..{self.size - 1}")
        return index

    def fail(self, index: int, error: BaseException | str) -> None:
        """Fail item `index` (0-based, in the list the handler got) whatever the handler
        returns for it; retried per the task's policy unless `error` is a NonRetryableError.
        A text becomes an Exception."""
        index = self._check("fail", index)
        self._failed[index] = error if isinstance(error, BaseException) else Exception(error)

    def logger_for(self, index: int) -> RunLogger:
        """The logger of item `index` (0-based, in the list the handler got): like a plain
        handler's `ctx.logger`, its lines carry that execution's id and attempt and are
        recorded on that execution (`conductor logs ID`), at most 1,000 per item and run."""
        index = self._check("logger_for", index)
        found = self._loggers.get(index)
        if found is None:
            found = self._loggers[index] = RunLogger(self._items[index], self._link)
        return found

    def failures(self) -> dict[int, BaseException]:
        return dict(self._failed)


def batch_of(specs: list[RunSpec]) -> RunSpec:
    """One run of several leases; its own key names it in the pool (never a lease's)."""
    first = specs[0]
    timeouts = [s.timeout for s in specs if s.timeout]
    return dataclasses.replace(
        first,
        token=f"batch:{first.token}",
        items=tuple(specs),
        priority=max(s.priority for s in specs),
        timeout=min(timeouts) if timeouts else 0.0,
    )


class Gathering:
    """The leases of one batch task waiting to fill a batch."""

    def __init__(self, size: int, wait: float) -> None:
        self.size = size
        self.wait = wait
        self.specs: list[RunSpec] = []
        self.timer: asyncio.TimerHandle | None = None

    def add(self, spec: RunSpec) -> bool:
        """Add a lease; True when the batch is full."""
        self.specs.append(spec)
        return len(self.specs) >= self.size

    def take(self) -> list[RunSpec]:
        """Everything gathered, for one batch (the timer is stopped)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        specs, self.specs = self.specs, []
        return specs

    def remove(self, key: RunKey) -> bool:
        """Drop a lease that must not run (released or lost); True if it was here."""
        for spec in self.specs:
            if spec.key == key:
                self.specs.remove(spec)
                return True
        return False


# -- in the pool process ----------------------------------------------------------------


def run_batch(fn: Callable[..., Any], spec: RunSpec, task: str,
              payload_type: Any | None, link: Link) -> list[tuple[Any, ...]]:
    """Run a plain batch handler; the outcome of every item, then ("batch_done", key)."""
    events, outcomes = _events(spec, payload_type)
    ctx = BatchContext([item for item, _ in events], task, link)
    try:
        results = fn([e for _, e in events], ctx) if events else []
    except BaseException as exc:  # the whole batch failed, whatever was raised
        return _all_failed(spec, events, outcomes, exc)
    return _outcomes(spec, events, outcomes, results, ctx)


async def run_batch_async(fn: Callable[..., Any], spec: RunSpec, task: str,
                          payload_type: Any | None, link: Link) -> list[tuple[Any, ...]]:
    """run_batch for an `async def` batch handler."""
    events, outcomes = _events(spec, payload_type)
    ctx = BatchContext([item for item, _ in events], task, link)
    try:
        results = await fn([e for _, e in events], ctx) if events else []
    except BaseException as exc:  # the whole batch failed, whatever was raised
        return _all_failed(spec, events, outcomes, exc)
    return _outcomes(spec, events, outcomes, results, ctx)


def _events(
    spec: RunSpec, payload_type: Any | None
) -> tuple[list[tuple[RunSpec, Event[Any]]], dict[RunKey, tuple[Any, ...]]]:
    """The items' events; an item whose payload does not fit the handler's Event[X] fails
    alone (InvalidPayload) and is left out of the handler's list."""
    events: list[tuple[RunSpec, Event[Any]]] = []
    outcomes: dict[RunKey, tuple[Any, ...]] = {}
    for item in spec.items:
        try:
            event = item.event()
            if payload_type is not None:
                event = dataclasses.replace(
                    event, payload=parse_payload(payload_type, event.payload))
        except BaseException as exc:
            outcomes[item.key] = _error(item.key, exc)
            continue
        events.append((item, event))
    return events, outcomes


def _outcomes(
    spec: RunSpec,
    events: list[tuple[RunSpec, Event[Any]]],
    outcomes: dict[RunKey, tuple[Any, ...]],
    results: Any,
    ctx: BatchContext,
) -> list[tuple[Any, ...]]:
    if not isinstance(results, list | tuple) or len(results) != len(events):
        got = f"{len(results)} results" if isinstance(results, list | tuple) else (
            type(results).__name__)
        wrong = InvalidResult(f"a batch handler returns a list of one result per event:"
                              f" {len(events)} events, got {got}")
        return _all_failed(spec, events, outcomes, wrong)
    failed = ctx.failures()
    for i, ((item, _), result) in enumerate(zip(events, results, strict=True)):
        error = failed.get(i, result if isinstance(result, BaseException) else None)
        if error is not None:
            outcomes[item.key] = _error(item.key, error)
            continue
        try:
            outcomes[item.key] = ("done", item.key, encode_result(result))
        except InvalidResult as exc:
            outcomes[item.key] = _error(item.key, exc)
    return _ordered(spec, outcomes)


def _all_failed(
    spec: RunSpec,
    events: list[tuple[RunSpec, Event[Any]]],
    outcomes: dict[RunKey, tuple[Any, ...]],
    exc: BaseException,
) -> list[tuple[Any, ...]]:
    for item, _ in events:
        outcomes[item.key] = _error(item.key, exc)
    return _ordered(spec, outcomes)


def _ordered(spec: RunSpec, outcomes: dict[RunKey, tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [outcomes[item.key] for item in spec.items] + [("batch_done", spec.key)]


def _error(key: RunKey, exc: BaseException) -> tuple[Any, ...]:
    retryable = not isinstance(exc, NonRetryableError)
    text = "".join(traceback.format_exception(exc))
    return ("error", key, type(exc).__name__, str(exc), text, retryable)
