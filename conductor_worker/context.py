"""What a handler sees: `event` and `ctx` (step, checkpoint, cancelled, logger)."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from .errors import Interrupted, InvalidResult
from .metrics import labelled, metrics
from .spans import Recorder
from .typed import jsonable
from .workflow import AsyncWorkflowContext, WorkflowContext

T = TypeVar("T")
#: the payload's type
PayloadT = TypeVar("PayloadT")

#: the part of the lease timeout kept in reserve when a run checks its lease before a step
LEASE_MARGIN = 0.1


@dataclass(frozen=True)
class Event(Generic[PayloadT]):
    """The invocation a handler runs for. Annotate the handler's first parameter
    `Event[Model]` (a pydantic model, or any type pydantic validates) to have the payload
    validated and parsed into it before the handler runs (see typed.py)."""

    #: The JSON payload, decoded (and parsed, with an `Event[Model]` annotation).
    payload: PayloadT
    #: The task's name.
    task: str
    #: The execution's id.
    execution_id: str
    #: The cron schedule that fired it, or None for a direct invoke.
    schedule: str | None = None
    #: The fire time it was created for (with schedule).
    fire_time: datetime | None = None


#: A run's identity: (execution id, lease token). Two runs of one execution (an old lease
#: still winding down and its re-lease) never share one.
RunKey = tuple[str, str]

#: A reading of the coordinator's clock: (its time in epoch seconds, time.monotonic() then).
Reading = tuple[float, float]


@dataclass(frozen=True)
class RunSpec:
    """One leased run, as the worker hands it to a pool process."""

    execution_id: str
    token: str
    task: str
    attempt: int
    max_attempts: int
    payload_json: str
    steps: dict[str, str]
    #: the coordinator's clock (epoch seconds) when it granted the lease
    coordinator_time: float = 0.0
    #: time.monotonic() in the worker when the lease arrived (one clock for all processes)
    received_monotonic: float = 0.0
    #: the cron schedule that created the execution, if any
    schedule: str | None = None
    #: its fire time (epoch seconds)
    fire_time: float | None = None
    #: when the task's open window closes (coordinator's clock, epoch seconds), if it has one
    window_closes_at: float | None = None
    #: the opening after that close (epoch seconds)
    window_reopens_at: float | None = None
    #: the lease timeout (seconds): the lease is certainly valid until received_monotonic
    #: plus this, and after that until the worker's last acknowledged heartbeat plus this
    #: (0: not checked)
    lease_seconds: float = 0.0
    #: the execution's priority: the pool starts its queued runs highest first
    priority: int = 0
    #: the W3C traceparent the execution was invoked with (OpenTelemetry); empty: untraced
    trace_context: str = ""
    #: the attempt's execution timeout in seconds, counted from its start in the pool
    #: process (0: none)
    timeout: float = 0.0
    #: a batch handler's run: the leases it runs, one item each (see batching.py); the
    #: batch's own key (token "batch:...") names no lease
    items: tuple[RunSpec, ...] = ()

    @property
    def key(self) -> RunKey:
        return (self.execution_id, self.token)

    @property
    def keys(self) -> tuple[RunKey, ...]:
        """The leases this run stands for: its items' keys, or its own."""
        return tuple(i.key for i in self.items) if self.items else (self.key,)

    def event(self) -> Event[Any]:
        fired = datetime.fromtimestamp(self.fire_time, UTC) if self.fire_time else None
        return Event(
            json.loads(self.payload_json), self.task, self.execution_id, self.schedule, fired
        )

    def coordinator_now(
        self, sync: Reading | None = None, bound: Reading | None = None
    ) -> float:
        """The coordinator's clock now, as late as this run can tell (epoch seconds).

        Each reading is (coordinator time, time.monotonic() then). The lease's time was read
        when the lease was granted, so it runs behind by the lease's time in transit (seconds
        on a loaded machine); `bound` is never behind: a heartbeat acknowledgement's time
        plus its round trip. `sync` is the coordinator's clock after a jump (a test moving
        it): readings from before it no longer count, and the bound is reset with it. The
        latest of what counts is used, so a window's close is never seen late."""
        readings = [r for r in (sync, bound) if r is not None]
        if sync is None or sync[1] <= self.received_monotonic:
            readings.append((self.coordinator_time, self.received_monotonic))
        now = time.monotonic()
        return max(base + (now - at) for base, at in readings)


class Link(Protocol):
    """The pool process's line to its worker (see child.py)."""

    shutdown: bool
    #: runs asked to let go, by run key: (reason, run_at)
    interrupts: dict[RunKey, tuple[str, float | None]]
    #: the latest clock sync from the coordinator: (its time, time.monotonic() then)
    clock_sync: Reading | None
    #: the coordinator's time is at most this (its time, time.monotonic() then): from the
    #: latest heartbeat acknowledgement after the last clock sync
    clock_bound: Reading | None
    #: time.monotonic() until which every lease the worker heartbeats is certainly renewed
    renewed_until: float

    def wait_lease(self, key: RunKey, valid: Callable[[], bool]) -> None:
        """Block until `valid()` (a heartbeat was acknowledged) or raise LeaseLost."""

    async def wait_lease_async(self, key: RunKey, valid: Callable[[], bool]) -> None:
        """wait_lease for `async def` handlers."""

    def save_step(self, key: RunKey, name: str, result_json: str) -> str:
        """Record a step durably and return the recorded result JSON (raises LeaseLost)."""

    async def save_step_async(self, key: RunKey, name: str, result_json: str) -> str:
        """save_step for `async def` handlers (awaits on the pool process's event loop)."""

    def call(self, key: RunKey, method: str, kwargs: dict[str, Any]) -> Any:
        """Call the client API through the worker (schedules); raises on failure."""

    async def call_async(self, key: RunKey, method: str, kwargs: dict[str, Any]) -> Any:
        """call for `async def` handlers."""
    def log(self, key: RunKey, attempt: int, level: str, message: str) -> None:
        """Forward a ctx.logger line to the worker (which sends it to the coordinator)."""


#: ctx.logger lines one run forwards to the coordinator at most (later ones are only logged
#: locally); the coordinator keeps at most --max-log-lines per execution
MAX_FORWARDED_LINES = 1000
#: forwarded lines are cut to this many characters (the coordinator cuts to its own limit)
MAX_FORWARDED_CHARS = 16 * 1024


class RunLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """`ctx.logger`: a logger whose records carry the execution id and attempt, and whose
    lines (at the logger's level or above) also go to the coordinator, bounded per run, for
    `conductor logs ID`."""

    def __init__(self, spec: RunSpec, link: Link) -> None:
        super().__init__(logging.getLogger(f"conductor.task.{spec.task}"),
                         {"execution_id": spec.execution_id, "attempt": spec.attempt})
        self._key = spec.key
        self._attempt = spec.attempt
        self._link = link
        self._forwarded = 0

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        super().log(level, msg, *args, **kwargs)
        if not self.isEnabledFor(level) or self._forwarded >= MAX_FORWARDED_LINES:
            return
        self._forwarded += 1
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = f"{msg!s} {args!r}"
        exc_info = kwargs.get("exc_info")
        if exc_info:
            if not isinstance(exc_info, tuple):
                exc_info = sys.exc_info() if exc_info is True else (
                    type(exc_info), exc_info, exc_info.__traceback__)
            if exc_info[0] is not None:
                text += "\n" + "".join(traceback.format_exception(*exc_info)).rstrip()
        self._link.log(self._key, self._attempt, logging.getLevelName(level),
                       text[:MAX_FORWARDED_CHARS])



class Context(WorkflowContext):
    """The `ctx` of a synchronous handler (workflow calls: conductor_worker/workflow.py)."""

    def __init__(self, spec: RunSpec, link: Link) -> None:
        self.execution_id = spec.execution_id
        self.attempt = spec.attempt
        self.max_attempts = spec.max_attempts
        self.task = spec.task
        self.logger = RunLogger(spec, link)
        self._spec = spec
        self._key = spec.key
        self._link = link
        self._steps = dict(spec.steps)
        self._steps_counter = labelled(metrics().steps, spec.task)
        self._closes_at = spec.window_closes_at
        self._lease_margin = LEASE_MARGIN * spec.lease_seconds
        #: step times of a traced run, for its spans (spans.py); None when not traced
        self.recorder = Recorder() if spec.trace_context else None

    @property
    def fencing_token(self) -> str:
        """This run's lease token. Store it with your own downstream writes and refuse a
        write whose token is older than the one stored: after this worker lost its lease
        (a long network cut), a new run of the execution has another token."""
        return self._spec.token

    @property
    def cancelled(self) -> bool:
        """True once cancellation of this execution was requested."""
        found = self._link.interrupts.get(self._key)
        return found is not None and found[0] == "cancelled"

    def checkpoint(self) -> None:
        """Release the execution here if the worker is stopping, the task's window has
        closed or the execution was cancelled; otherwise return at once (a flag check)."""
        if self._link.shutdown or self._key in self._link.interrupts:
            self._interrupt()
        if self._closes_at is not None and self._now() >= self._closes_at:
            raise Interrupted("window", self._spec.window_reopens_at)

    def _lease_valid(self) -> bool:
        """Is the lease certainly still this run's? (Before a step function starts: a worker
        cut off from its coordinator, or frozen, must not run steps another worker may have
        taken over and recorded once its lease expired.)"""
        spec = self._spec
        if spec.lease_seconds <= 0:
            return True
        until = max(spec.received_monotonic + spec.lease_seconds, self._link.renewed_until)
        return time.monotonic() < until - self._lease_margin

    def _now(self) -> float:
        return self._spec.coordinator_now(self._link.clock_sync, self._link.clock_bound)

    def _interrupt(self) -> None:
        reason, run_at = self._link.interrupts.get(self._key, ("shutdown", None))
        raise Interrupted(reason, run_at)

    def step(self, name: str, fn: Callable[[], T]) -> T:
        """Run `fn` once per execution: its result is recorded durably before this returns,
        and a later attempt gets the recorded result without running `fn` again. Reusing a
        name returns the first result. The result must be JSON-serialisable and is returned
        as decoded from JSON (tuples come back as lists), the same on every attempt."""
        _check_name(name)
        if name in self._steps:
            self._traced(name, time.time_ns(), replayed=True)
            return json.loads(self._steps[name])  # type: ignore[no-any-return]
        self.checkpoint()
        if not self._lease_valid():
            self._link.wait_lease(self._key, self._lease_valid)
        started = time.time_ns()
        recorded: T = self._record(name, fn())
        self._traced(name, started)
        return recorded

    def _traced(self, name: str, started_ns: int, replayed: bool = False) -> None:
        if self.recorder is not None:
            self.recorder.step(name, started_ns, replayed)

    def sleep(self, name: str, seconds: float) -> None:
        """Release the execution and resume it after `seconds` (on the coordinator's clock).

        A step: once the sleep has passed, calling it again with the same name returns at
        once, so code before it is not repeated on resume (if it is in steps)."""
        wake, recorded = self._sleep_until(name, seconds)
        if not recorded:
            self._record(name, {"sleep_until": wake})
        self._wake_at(wake)

    def _sleep_until(self, name: str, seconds: float) -> tuple[float, bool]:
        """When ctx.sleep(name, seconds) ends, and whether that is recorded already."""
        _check_name(name)
        if seconds < 0 or seconds != seconds:
            raise ValueError(f"ctx.sleep({name!r}): seconds must be >= 0, got {seconds!r}")
        if name in self._steps:
            return float(json.loads(self._steps[name])["sleep_until"]), True
        self.checkpoint()
        return self._now() + seconds, False

    def _wake_at(self, wake: float) -> None:
        if self._now() < wake:
            raise Interrupted("sleep", wake)

    def schedule(
        self,
        name: str,
        cron: str,
        *,
        task: str | None = None,
        payload: Any = None,
        timezone: str | None = None,
        missed: str = "latest",
        missed_limit: int = 1,
    ) -> dict[str, Any]:
        """Create or replace the cron schedule `name` of `task` (default: this task).
        Idempotent, so it is safe in code that may run again. Returns the stored schedule."""
        kwargs = {
            "task": task or self.task,
            "name": name,
            "cron": cron,
            "payload": payload,
            "timezone": timezone,
            "missed": missed,
            "missed_limit": missed_limit,
        }
        result: dict[str, Any] = self._link.call(self._key, "schedule", kwargs)
        return result

    def unschedule(self, name: str, *, task: str | None = None) -> int:
        """Delete a schedule (and cancel its pending fires); returns how many were cancelled.
        Deleting a schedule that does not exist returns 0."""
        kwargs = {"task": task or self.task, "name": name}
        cancelled: int = self._link.call(self._key, "unschedule", kwargs)
        return cancelled

    def _record(self, name: str, value: Any) -> Any:
        encoded = _encode(value, f"result of step {name!r}")
        return self._recorded(
            name, self._link.save_step(self._key, name, encoded)
        )

    async def _record_async(self, name: str, value: Any) -> Any:
        encoded = _encode(value, f"result of step {name!r}")
        return self._recorded(
            name,
            await self._link.save_step_async(self._key, name, encoded),
        )

    def _recorded(self, name: str, recorded: str) -> Any:
        self._steps[name] = recorded
        self._steps_counter.inc()
        return json.loads(recorded)


class AsyncContext(AsyncWorkflowContext, Context):  # type: ignore[misc]
    """The `ctx` of an `async def` handler: `await ctx.step(...)`."""

    async def step(self, name: str, fn: Callable[[], Any]) -> Any:  # type: ignore[override]
        """Like Context.step; `fn` may be a plain function or return an awaitable."""
        _check_name(name)
        if name in self._steps:
            self._traced(name, time.time_ns(), replayed=True)
            return json.loads(self._steps[name])
        self.checkpoint()
        if not self._lease_valid():
            await self._link.wait_lease_async(self._key, self._lease_valid)
        started = time.time_ns()
        value = fn()
        if isinstance(value, Awaitable):
            value = await value
        recorded = await self._record_async(name, value)
        self._traced(name, started)
        return recorded

    async def sleep(self, name: str, seconds: float) -> None:  # type: ignore[override]
        """Like Context.sleep (`await ctx.sleep(...)`)."""
        wake, recorded = self._sleep_until(name, seconds)
        if not recorded:
            await self._record_async(name, {"sleep_until": wake})
        self._wake_at(wake)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"step name must be a non-empty string, got {name!r}")


def _encode(value: Any, what: str) -> str:
    try:
        text = json.dumps(value, allow_nan=False, default=jsonable)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} is not JSON-serialisable: {exc}") from exc
    if "\\u0000" in text and _UNESCAPED_NUL.search(text):
        raise ValueError(f"{what} contains a NUL character (\\u0000), which cannot be stored")
    return text


#: a JSON escape of NUL: \u0000 after an even number of backslashes (odd ones escape it)
_UNESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def encode_result(value: Any) -> str:
    """The handler's return value as JSON; raises InvalidResult (not retried)."""
    try:
        return _encode(value, "the handler's return value")
    except (TypeError, ValueError) as exc:
        raise InvalidResult(str(exc)) from None
