"""ctx.invoke, ctx.invoke_many, ctx.emit, ctx.wait_for_event and ctx.wait_for_signal: the
workflow half of the handler's context (mixins of Context and AsyncContext).

Every wait is a step: the first call asks the coordinator to begin it (creating children
once per step name) and releases the run; the coordinator records the outcome as the step
and makes the run runnable when the wait is over, so the resumed handler finds it recorded
and goes on. While it waits, the execution holds no lease, process or thread.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .errors import (
    ChildCancelled,
    ChildFailed,
    ChildTimeout,
    EventTimeout,
    Interrupted,
    ResultTooLarge,
    SignalTimeout,
)

if TYPE_CHECKING:
    from .context import Link


class _WorkflowBase:
    """What both mixins share: building wait requests and reading their outcomes."""

    execution_id: str
    _steps: dict[str, str]
    _key: tuple[str, str]
    _link: Link

    def checkpoint(self) -> None:
        raise NotImplementedError

    def _record(self, name: str, value: Any) -> Any:
        raise NotImplementedError

    async def _record_async(self, name: str, value: Any) -> Any:
        raise NotImplementedError

    def _recorded_wait(self, name: str) -> Any:
        """The wait's recorded outcome, or None (after a checkpoint) when it is not over."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"step name must be a non-empty string, got {name!r}")
        if name in self._steps:
            return json.loads(self._steps[name])
        self.checkpoint()
        return None

    def _wait_kwargs(self, step: str, kind: str, timeout: float | None,
                     **more: Any) -> dict[str, Any]:
        if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"{step!r}: timeout must be a positive number of seconds,"
                             f" got {timeout!r}")
        return {"execution_id": self._key[0], "lease_token": self._key[1], "step": step,
                "kind": kind, "timeout": timeout, **more}

    def _answered(self, name: str, answer: tuple[str | None, list[str]]) -> Any:
        result_json = answer[0]
        if result_json is None:  # still waiting: let go; the coordinator resumes the run
            raise Interrupted("waiting")
        self._steps[name] = result_json
        return json.loads(result_json)

    def _children_kwargs(self, name: str, task: str, payloads: list[Any], timeout: float | None,
                         priority: int | None, queue: str | None) -> dict[str, Any]:
        if not isinstance(task, str) or not task:
            raise ValueError(f"{name!r}: task must be a task name, got {task!r}")
        encoded = []
        for i, payload in enumerate(payloads):
            try:
                encoded.append(json.dumps(payload, allow_nan=False))
            except (TypeError, ValueError) as exc:
                raise TypeError(f"{name!r}: payload {i} is not JSON-serialisable: {exc}") from exc
        return self._wait_kwargs(name, "children", timeout, task=task, payloads_json=encoded,
                                 priority=priority or 0, queue=queue)

    def _emit_kwargs(self, name: str, event: str, payload: Any) -> dict[str, Any]:
        return {"event": event, "payload": payload,
                "dedupe_key": f"conductor:{self.execution_id}:{name}"}


class WorkflowContext(_WorkflowBase):
    """The workflow calls of a synchronous handler's ctx."""

    def _ask(self, kwargs: dict[str, Any]) -> Any:
        answer = self._link.call(self._key, "workflow_wait", kwargs)
        return self._answered(kwargs["step"], answer)

    def invoke(self, step_name: str, task: str, payload: Any = None, *,
               timeout: float | None = None, priority: int | None = None,
               queue: str | None = None) -> Any:
        """Run `task` as a child execution and return its result. The child is created once
        per step name; the parent is released while it runs and resumed when it is final.
        Raises ChildFailed (ChildCancelled) or ChildTimeout (the child is cancelled then)."""
        outcome = self._recorded_wait(step_name)
        if outcome is None:
            outcome = self._ask(self._children_kwargs(
                step_name, task, [payload], timeout, priority, queue))
        return _results(outcome, step_name, return_exceptions=False)[0]

    def invoke_many(self, step_name: str, task: str, payloads: Iterable[Any], *,
                    timeout: float | None = None, priority: int | None = None,
                    queue: str | None = None, return_exceptions: bool = False) -> list[Any]:
        """One child per payload, created in one write; returns their results in payload
        order once all are final. A failed child raises ChildFailed (the first one), or with
        `return_exceptions=True` takes its place in the list. ChildTimeout after `timeout`
        seconds (the unfinished children are cancelled)."""
        payloads = list(payloads)
        if not payloads:
            return []
        outcome = self._recorded_wait(step_name)
        if outcome is None:
            outcome = self._ask(self._children_kwargs(
                step_name, task, payloads, timeout, priority, queue))
        return _results(outcome, step_name, return_exceptions)

    def emit(self, step_name: str, event: str, payload: Any = None) -> list[str]:
        """Emit an event once per step name (a resumed run does not emit it again); returns
        the ids of the executions it created."""
        recorded = self._recorded_wait(step_name)
        if recorded is not None:
            return list(recorded)
        ids = self._link.call(self._key, "emit", self._emit_kwargs(step_name, event, payload))
        return list(self._record(step_name, ids))

    def wait_for_event(self, step_name: str, event: str, *, match: dict[str, Any] | None = None,
                       timeout: float | None = None) -> Any:
        """Wait (released) for the first event `event` emitted after this wait began whose
        payload matches `match` ({dotted.path: value}); returns its payload. Events emitted
        before do not count. Raises EventTimeout after `timeout` seconds."""
        outcome = self._recorded_wait(step_name)
        if outcome is None:
            outcome = self._ask(self._wait_kwargs(
                step_name, "event", timeout, name=event, match=match))
        return _event(outcome, step_name, event)

    def wait_for_signal(self, name: str, *, timeout: float | None = None) -> Any:
        """Wait (released) for the signal `name` sent to this execution (Client.signal);
        returns its payload. A signal sent earlier is kept and returned at once. Recorded as
        the step "signal:<name>". Raises SignalTimeout after `timeout` seconds."""
        step = f"signal:{name}"
        outcome = self._recorded_wait(step)
        if outcome is None:
            outcome = self._ask(self._wait_kwargs(step, "signal", timeout, name=name))
        return _signal(outcome, name)


class AsyncWorkflowContext(_WorkflowBase):
    """The workflow calls of an `async def` handler's ctx (awaitables)."""

    async def _ask(self, kwargs: dict[str, Any]) -> Any:
        answer = await self._link.call_async(self._key, "workflow_wait", kwargs)
        return self._answered(kwargs["step"], answer)

    async def invoke(self, step_name: str, task: str, payload: Any = None, *,
                     timeout: float | None = None, priority: int | None = None,  # noqa: ASYNC109 (a durable wait's)
                     queue: str | None = None) -> Any:
        """Like WorkflowContext.invoke."""
        outcome = self._recorded_wait(step_name)
        if outcome is None:
            outcome = await self._ask(self._children_kwargs(
                step_name, task, [payload], timeout, priority, queue))
        return _results(outcome, step_name, return_exceptions=False)[0]

    async def invoke_many(self, step_name: str, task: str, payloads: Iterable[Any], *,
                          timeout: float | None = None, priority: int | None = None,  # noqa: ASYNC109 (a durable wait's)
                          queue: str | None = None,
                          return_exceptions: bool = False) -> list[Any]:
        """Like WorkflowContext.invoke_many."""
        payloads = list(payloads)
        if not payloads:
            return []
        outcome = self._recorded_wait(step_name)
        if outcome is None:
            outcome = await self._ask(self._children_kwargs(
                step_name, task, payloads, timeout, priority, queue))
        return _results(outcome, step_name, return_exceptions)

    async def emit(self, step_name: str, event: str, payload: Any = None) -> list[str]:
        """Like WorkflowContext.emit."""
        recorded = self._recorded_wait(step_name)
        if recorded is not None:
            return list(recorded)
        ids = await self._link.call_async(
            self._key, "emit", self._emit_kwargs(step_name, event, payload))
        return list(await self._record_async(step_name, ids))

    async def wait_for_event(self, step_name: str, event: str, *,
                             match: dict[str, Any] | None = None,
                             timeout: float | None = None) -> Any:  # noqa: ASYNC109 (a durable wait's)
        """Like WorkflowContext.wait_for_event."""
        outcome = self._recorded_wait(step_name)
        if outcome is None:
            outcome = await self._ask(self._wait_kwargs(
                step_name, "event", timeout, name=event, match=match))
        return _event(outcome, step_name, event)

    async def wait_for_signal(self, name: str, *, timeout: float | None = None) -> Any:  # noqa: ASYNC109 (a durable wait's)
        """Like WorkflowContext.wait_for_signal."""
        step = f"signal:{name}"
        outcome = self._recorded_wait(step)
        if outcome is None:
            outcome = await self._ask(self._wait_kwargs(step, "signal", timeout, name=name))
        return _signal(outcome, name)


def _too_large(outcome: dict[str, Any], step: str) -> None:
    """Raise the error the coordinator recorded for an outcome over the steps limit."""
    measured = outcome.get("too_large")
    if measured is not None:
        raise ResultTooLarge(step, measured["bytes"], measured["steps_bytes"],
                             measured["limit"])


def _results(outcome: dict[str, Any], step: str, return_exceptions: bool) -> list[Any]:
    _too_large(outcome, step)
    children = outcome["children"]
    if outcome.get("timeout"):
        ids = [c["id"] for c in children]
        unfinished = [c["id"] for c in children if c["state"] != "succeeded"
                      and not (c["state"] in ("failed", "cancelled") and c.get("error"))]
        raise ChildTimeout(ids, unfinished)
    results: list[Any] = []
    for child in children:
        if child["state"] == "succeeded":
            results.append(child["result"])
            continue
        error = child.get("error") or {}
        kind = ChildCancelled if child["state"] == "cancelled" else ChildFailed
        failure = kind(child["id"], child["state"], error.get("type", "Cancelled"),
                       error.get("message", ""))
        if not return_exceptions:
            raise failure
        results.append(failure)
    return results


def _event(outcome: dict[str, Any], step: str, event: str) -> Any:
    _too_large(outcome, step)
    if outcome.get("timeout"):
        raise EventTimeout(f"{step!r}: no event {event!r} in time")
    return outcome["event"]


def _signal(outcome: dict[str, Any], name: str) -> Any:
    _too_large(outcome, f"signal:{name}")
    if outcome.get("timeout"):
        raise SignalTimeout(f"no signal {name!r} in time")
    return outcome["signal"]
