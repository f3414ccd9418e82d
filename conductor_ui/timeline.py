"""An execution's step timeline: where each recorded step sits between the execution's start
and now, and how long it took.

The worker records a step when its function returns (saved_at); a step's span starts at the
previous step's save or, for the first step of a run, at that run's lease (from the attempt
history), so the duration is the step's function plus the handler's code before it. Steps
copied by a rerun were not run by this execution: they are shown as copied, without a span.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from conductor_worker import Attempt, Execution
from conductor_worker.records import Step


@dataclass(frozen=True)
class Span:
    """One step on the timeline (offset and width in percent of the whole)."""

    name: str
    run: int | None
    started_at: datetime | None
    saved_at: datetime
    seconds: float | None
    offset: float
    width: float


def timeline(execution: Execution, steps: Sequence[Step], now: datetime) -> list[Span]:
    """The steps in the order they were saved, placed in their runs."""
    runs = [a for a in execution.attempts if a.started_at is not None]
    origin = runs[0].started_at if runs else execution.started_at
    end = execution.finished_at or now
    if origin is None or not steps:
        return [Span(s.name, None, None, s.saved_at, None, 0.0, 0.0) for s in steps]
    total = max((end - origin).total_seconds(), 1e-6)
    spans: list[Span] = []
    previous: datetime | None = None
    previous_run: int | None = None
    for step in steps:
        run = _run_of(runs, step.saved_at)
        if run is None:  # saved before this execution ran: copied by a rerun
            spans.append(Span(step.name, None, None, step.saved_at, None, 0.0, 0.0))
            continue
        assert run.started_at is not None
        start = previous if previous is not None and previous_run == run.number and \
            previous >= run.started_at else run.started_at
        seconds = max(0.0, (step.saved_at - start).total_seconds())
        offset = max(0.0, (start - origin).total_seconds()) / total * 100
        width = max(seconds / total * 100, 0.5)
        spans.append(Span(step.name, run.number, start, step.saved_at, seconds,
                          min(offset, 99.5), min(width, 100 - min(offset, 99.5))))
        previous, previous_run = step.saved_at, run.number
    return spans


def _run_of(runs: Sequence[Attempt], when: datetime) -> Attempt | None:
    """The run that was going on at `when` (the latest one that had started)."""
    found = None
    for run in runs:
        if run.started_at is not None and run.started_at <= when:
            found = run
    return found
