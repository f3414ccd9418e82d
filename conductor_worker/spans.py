"""What a pool process records for tracing: the times of an attempt and its steps, sent to
the worker's main process as one message when the run ends (see tracing.py, which turns them
into OpenTelemetry spans there). Plain data: a pool process imports no OpenTelemetry and
does no I/O for tracing. Only runs of a traced execution (its lease has a trace context)
record anything."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

#: (execution id, lease token), as in context.py
RunKey = tuple[str, str]


@dataclass(frozen=True)
class StepSpan:
    """One ctx.step (or ctx.sleep) of an attempt."""

    name: str
    start_ns: int
    end_ns: int
    #: recorded by an earlier attempt: returned without running
    replayed: bool


@dataclass(frozen=True)
class AttemptSpans:
    """An attempt as its pool process saw it: ("trace", key, AttemptSpans) on the pipe,
    just before the message that reports how the run ended."""

    start_ns: int
    end_ns: int
    #: the kind of the outcome message: done, error, released or abandoned
    outcome: str
    #: with "error": the exception's type name
    error_type: str
    steps: tuple[StepSpan, ...]


@dataclass
class Recorder:
    """Collects one run's step times."""

    start_ns: int = field(default_factory=time.time_ns)
    steps: list[StepSpan] = field(default_factory=list)

    def step(self, name: str, start_ns: int, replayed: bool = False) -> None:
        self.steps.append(StepSpan(name, start_ns, time.time_ns(), replayed))

    def message(self, key: RunKey, outcome: tuple[object, ...]) -> tuple[object, ...]:
        """The "trace" message for a run that ended with `outcome`."""
        kind = str(outcome[0])
        error_type = str(outcome[2]) if kind == "error" else ""
        spans = AttemptSpans(
            self.start_ns, time.time_ns(), kind, error_type, tuple(self.steps)
        )
        return ("trace", key, spans)
