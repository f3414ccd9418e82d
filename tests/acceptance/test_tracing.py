"""OpenTelemetry: one trace from invoke through each lease, attempt and step, across the
client, the coordinator (which stores the trace context), the worker and its pool processes.
Spans are collected with the SDK's in-memory exporter; the worker runs in this process
(Worker.drain), its pool processes are real ones."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import grpc
import pytest

from conductor.v1 import client_pb2, client_pb2_grpc
from conductor_worker import Client, Worker, tracing
from tests.acceptance.traced_tasks import traced_async, traced_retry
from tests.conftest import ROOT, wait_for

pytestmark = pytest.mark.acceptance
sdk = pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

TASKS = [traced_retry, traced_async]


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A tracer provider for Conductor's spans and the test's own (not the global one)."""
    made = sdk.TracerProvider()
    monkeypatch.setattr(tracing, "_tracer", lambda: made.get_tracer("conductor_worker"))
    return made


@pytest.fixture
def exporter(provider: Any) -> InMemorySpanExporter:
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return memory


def _drain_until(address: str, client: Client, execution_id: str) -> None:
    wait_for(
        lambda: Worker(TASKS, address).drain() == 0 and client.get(execution_id).finished,
        timeout=120, what="the execution to finish",
    )


def test_trace_follows_invoke_lease_attempts_and_steps(address, provider, exporter, db):
    with Client(address) as client:
        assert Worker(TASKS, address).drain() == 0  # registers the tasks
        with provider.get_tracer("test").start_as_current_span("request") as request:
            execution_id = client.invoke(traced_retry, None)
        _drain_until(address, client, execution_id)
        done = client.get(execution_id)
    assert (done.state, done.attempt, done.result) == ("succeeded", 2, 3)

    spans = exporter.get_finished_spans()
    by_name: dict[str, list[Any]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    (invoke,) = by_name["conductor.invoke"]
    leases = sorted(by_name["conductor.lease"], key=lambda s: s.attributes["conductor.attempt"])
    attempts = sorted(by_name["conductor.attempt"],
                      key=lambda s: s.attributes["conductor.attempt"])
    steps = by_name["conductor.step"]
    assert len(leases) == 2 and len(attempts) == 2 and len(steps) == 4

    # one trace, and each span the child of the one before it
    trace_id = request.get_span_context().trace_id
    assert {s.context.trace_id for s in spans} == {trace_id}
    assert invoke.parent.span_id == request.get_span_context().span_id
    for number, (lease, attempt) in enumerate(zip(leases, attempts, strict=True), start=1):
        assert lease.parent.span_id == invoke.context.span_id
        assert attempt.parent.span_id == lease.context.span_id
        for span in (lease, attempt):
            assert span.attributes["conductor.task"] == "traced-retry"
            assert span.attributes["conductor.execution_id"] == execution_id
            assert span.attributes["conductor.attempt"] == number
        mine = sorted((s for s in steps if s.parent.span_id == attempt.context.span_id),
                      key=lambda s: s.start_time)
        assert [s.attributes["conductor.step"] for s in mine] == ["one", "two"]
        assert all(s.attributes["conductor.step.replayed"] == (number == 2) for s in mine)
        assert all(attempt.start_time <= s.start_time <= s.end_time <= attempt.end_time
                   for s in mine)
        assert lease.start_time <= attempt.start_time <= attempt.end_time <= lease.end_time
    assert invoke.attributes == {"conductor.task": "traced-retry",
                                 "conductor.execution_id": execution_id}
    assert attempts[0].status.status_code.name == "ERROR"
    assert attempts[0].attributes["conductor.outcome"] == "error"
    assert [lease.attributes["conductor.outcome"] for lease in leases] == ["failed", "completed"]
    assert attempts[1].status.status_code.name == "UNSET"

    # the coordinator stored the invoke span's traceparent with the execution
    stored = db.execute(
        "SELECT trace_context FROM conductor_executions WHERE id = %s", (int(execution_id),)
    ).fetchone()[0]
    assert stored.startswith(f"00-{trace_id:032x}-{invoke.context.span_id:016x}-")


def test_async_handlers_and_batches_are_traced(address, exporter):
    with Client(address) as client:
        assert Worker(TASKS, address).drain() == 0
        ids = client.invoke_batch(traced_async, [None, None])
        for execution_id in ids:
            _drain_until(address, client, execution_id)
            assert client.get(execution_id).result == 42
    spans = exporter.get_finished_spans()
    (invoke,) = [s for s in spans if s.name == "conductor.invoke"]
    assert invoke.attributes["conductor.execution_ids"] == tuple(ids)
    leases = [s for s in spans if s.name == "conductor.lease"]
    assert sorted(s.attributes["conductor.execution_id"] for s in leases) == sorted(ids)
    assert all(s.parent.span_id == invoke.context.span_id for s in leases)
    steps = [s for s in spans if s.name == "conductor.step"]
    assert [s.attributes["conductor.step"] for s in steps] == ["only", "only"]


def test_untraced_invokes_store_no_context(address, db, monkeypatch):
    monkeypatch.setattr(tracing, "_otel", lambda: None)  # as without OpenTelemetry
    with Client(address) as client:
        assert Worker(TASKS, address).drain() == 0
        execution_id = client.invoke(traced_async, None)
        _drain_until(address, client, execution_id)
    assert db.execute(
        "SELECT trace_context FROM conductor_executions WHERE id = %s", (int(execution_id),)
    ).fetchone()[0] is None


def test_a_bad_trace_context_is_refused(address):
    assert Worker(TASKS, address).drain() == 0
    with grpc.insecure_channel(address) as channel:
        stub = client_pb2_grpc.ConductorServiceStub(channel)
        with pytest.raises(grpc.RpcError) as failed:
            stub.Invoke(client_pb2.InvokeRequest(task="traced-async", trace_context="nope"))
    assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert failed.value.details().startswith("trace_context: not a W3C traceparent")


NO_OTEL = """
import sys
sys.modules["opentelemetry"] = None  # as if it were not installed
from conductor_worker import operations, tracing
call = next(operations.invoke("some-task", {"a": 1}))
assert call.request.trace_context == "", call.request
assert tracing.start_lease("00-" + "1" * 32 + "-" + "2" * 16 + "-01", "t", "1", 1) is None
assert not [m for m in sys.modules if m.startswith("opentelemetry.")], "imported"
"""

LAZY = """
import sys
import conductor_worker
assert not [m for m in sys.modules if m.startswith("opentelemetry")], "imported at import"
"""


@pytest.mark.parametrize("script", [NO_OTEL, LAZY], ids=["not-installed", "lazy"])
def test_without_opentelemetry_nothing_is_imported(script):
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
