"""OpenTelemetry traces (optional: `pip install 'conductor-tasks[otel]'`).

One trace follows an execution across processes:

    conductor.invoke       the client's call (PRODUCER), child of the caller's current span
    └ conductor.lease      one per lease, in the worker's main process (CONSUMER): from the
      │                    lease's arrival to the report of how the run ended
      └ conductor.attempt  the handler's run in its pool process
        └ conductor.step   one per ctx.step (replayed ones marked conductor.step.replayed)

Attributes: conductor.task, conductor.execution_id, conductor.attempt (and conductor.step).
The invoke span's W3C traceparent travels in InvokeRequest.trace_context, is stored with the
execution (column trace_context) and comes back on every lease of it.

Pool processes do no I/O of their own, so they make no spans: they record their attempt's
and steps' times (spans.py) and send them up the pipe with the run's outcome; the worker's
main process makes the attempt and step spans from them, with those start and end times, as
children of its lease span, and exports them with the tracer provider configured there (in
the task module, or by `opentelemetry-instrument`). A pool process killed mid-run sends
nothing: its lease span ends with the error, without an attempt span.

Without OpenTelemetry installed nothing here imports it and every hook returns at once;
executions invoked without a trace context are not traced by the worker either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .spans import AttemptSpans

_api: Any = None
_checked = False


def _otel() -> Any:
    """opentelemetry.trace, or None when it is not installed (looked for once, at the first
    invoke or traced lease: importing conductor_worker imports nothing of it)."""
    global _api, _checked
    if not _checked:
        _checked = True
        try:
            from opentelemetry import trace
        except ImportError:
            return None
        _api = trace
    return _api


def _tracer() -> Any:
    return _otel().get_tracer("conductor_worker")


def _propagator() -> Any:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator()


# -- the client: invoke ---------------------------------------------------------------


def start_invoke(task: str) -> Any | None:
    """The span of an invoke (a child of the current span), or None without OpenTelemetry."""
    if _otel() is None:
        return None
    return _tracer().start_span(
        "conductor.invoke",
        kind=_api.SpanKind.PRODUCER,
        attributes={"conductor.task": task},
    )


def traceparent(span: Any | None) -> str:
    """The span's W3C traceparent ("" without a span, or for one that is not sampled)."""
    if span is None or not span.get_span_context().is_valid:
        return ""
    carrier: dict[str, str] = {}
    _propagator().inject(carrier, context=_api.set_span_in_context(span))
    return carrier.get("traceparent", "")


def end_invoke(span: Any | None, execution_ids: list[str], error: BaseException | None) -> None:
    if span is None:
        return
    if len(execution_ids) == 1:
        span.set_attribute("conductor.execution_id", execution_ids[0])
    elif execution_ids:
        span.set_attribute("conductor.execution_ids", execution_ids)
    if error is not None:
        span.record_exception(error)
        span.set_status(_api.Status(_api.StatusCode.ERROR, type(error).__name__))
    span.end()


# -- the worker's main process: leases, attempts, steps -------------------------------


@dataclass(frozen=True)
class LeaseTrace:
    """The span of one lease and the attributes its attempt and steps share."""

    span: Any
    attributes: dict[str, Any]


def start_lease(
    trace_context: str, task: str, execution_id: str, attempt: int
) -> LeaseTrace | None:
    """The span of a lease of a traced execution; None if untraced or without OpenTelemetry."""
    if not trace_context or _otel() is None:
        return None
    parent = _propagator().extract({"traceparent": trace_context})
    attributes = {"conductor.task": task, "conductor.execution_id": execution_id,
                  "conductor.attempt": attempt}
    span = _tracer().start_span(
        "conductor.lease", context=parent, kind=_api.SpanKind.CONSUMER, attributes=attributes
    )
    return LeaseTrace(span, attributes)


def attempt(lease: LeaseTrace | None, spans: AttemptSpans) -> None:
    """Make the attempt span and its step spans from what the pool process recorded."""
    if lease is None:
        return
    tracer = _tracer()
    attributes = lease.attributes
    run = tracer.start_span(
        "conductor.attempt",
        context=_api.set_span_in_context(lease.span),
        start_time=spans.start_ns,
        attributes={**attributes, "conductor.outcome": spans.outcome},
    )
    inside = _api.set_span_in_context(run)
    for step in spans.steps:
        tracer.start_span(
            "conductor.step",
            context=inside,
            start_time=step.start_ns,
            attributes={**attributes, "conductor.step": step.name,
                        "conductor.step.replayed": step.replayed},
        ).end(end_time=step.end_ns)
    if spans.outcome == "error":
        run.set_status(_api.Status(_api.StatusCode.ERROR, spans.error_type))
    run.end(end_time=spans.end_ns)


def end_lease(lease: LeaseTrace | None, outcome: str, error: str = "") -> None:
    """End a lease span: outcome completed, failed (with the error), released or abandoned."""
    if lease is None:
        return
    lease.span.set_attribute("conductor.outcome", outcome)
    if error:
        lease.span.set_status(_api.Status(_api.StatusCode.ERROR, error))
    lease.span.end()
