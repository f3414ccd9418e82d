"""conductor_worker.runtime: a stopping worker is idle only once no lease can still arrive.

It sends StopLeasing and keeps reading until the coordinator answers LeasingStopped (every
lease sent before the answer has arrived, and is released unstarted); without a stream it
is idle at once, and an answer that never comes is waited for STOP_ANSWER_WAIT at most.
The stream itself is covered by tests/integration/test_stop_leasing.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from conductor.v1 import worker_pb2
from conductor_worker import runtime
from conductor_worker.runtime import Worker

from . import sample_tasks

STOPPED = worker_pb2.CoordinatorMessage(leasing_stopped=worker_pb2.LeasingStopped())


def stopping(scenario: Callable[[Worker, asyncio.Queue[Any]], Awaitable[None]],
             connected: bool = True) -> None:
    async def main() -> None:
        worker = Worker([sample_tasks.plain], "127.0.0.1:1")
        worker._idle = asyncio.Event()
        worker._abort = asyncio.Event()
        outbox: asyncio.Queue[Any] = asyncio.Queue()
        if connected:
            worker._outbox = outbox
        shutdown = asyncio.create_task(worker._shutdown())
        try:
            await scenario(worker, outbox)
        finally:
            await asyncio.wait_for(shutdown, 10)

    asyncio.run(main())


def test_idle_only_after_the_answer_to_stop_leasing() -> None:
    async def scenario(worker: Worker, outbox: asyncio.Queue[Any]) -> None:
        sent = await asyncio.wait_for(outbox.get(), 5)
        assert sent.WhichOneof("kind") == "stop_leasing"
        await asyncio.sleep(0.2)
        assert worker._idle is not None and not worker._idle.is_set()
        worker._on_coordinator_message(STOPPED)
        await asyncio.wait_for(worker._idle.wait(), 5)

    stopping(scenario)


def test_a_lease_arriving_before_the_answer_is_released_unstarted() -> None:
    async def scenario(worker: Worker, outbox: asyncio.Queue[Any]) -> None:
        await asyncio.wait_for(outbox.get(), 5)  # StopLeasing
        lease = worker_pb2.Lease(execution_id="9", lease_token="tok", task=sample_tasks.plain.name,
                                 attempt=1, max_attempts=3, payload_json="null")
        worker._on_coordinator_message(
            worker_pb2.CoordinatorMessage(leases=worker_pb2.Leases(items=[lease])))
        worker._on_coordinator_message(STOPPED)
        kind, outcome = await asyncio.wait_for(outbox.get(), 5)
        assert kind == "outcome" and outcome.execution_id == "9"
        assert outcome.released.reason == worker_pb2.RELEASE_REASON_SHUTDOWN
        assert worker._idle is not None and not worker._idle.is_set(), "held until acked"
        worker._on_coordinator_message(worker_pb2.CoordinatorMessage(
            outcome_acks=worker_pb2.OutcomeAcks(items=[worker_pb2.OutcomeAck(
                execution_id="9", lease_token="tok", status=worker_pb2.WRITE_STATUS_OK)])))
        await asyncio.wait_for(worker._idle.wait(), 5)

    stopping(scenario)


def test_without_a_stream_the_worker_is_idle_at_once() -> None:
    async def scenario(worker: Worker, outbox: asyncio.Queue[Any]) -> None:
        assert worker._idle is not None
        await asyncio.wait_for(worker._idle.wait(), 1)

    stopping(scenario, connected=False)


def test_an_answer_that_never_comes_is_waited_for_a_bounded_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runtime, "STOP_ANSWER_WAIT", 0.3)

    async def scenario(worker: Worker, outbox: asyncio.Queue[Any]) -> None:
        assert worker._idle is not None
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.wait_for(worker._idle.wait(), 10)
        assert loop.time() - started >= 0.25

    stopping(scenario)
