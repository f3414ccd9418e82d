"""conductor_worker.runtime: how the worker's stream sender groups step saves.

While a batch of step saves is being committed, a few more saves wait for its
acknowledgement (at most STEP_GATHER_MAX) and then go as one message; a burst of
STEP_BATCH_ALONE or more goes at once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from conductor.v1 import worker_pb2
from conductor_worker import runtime
from conductor_worker.runtime import Worker

from . import sample_tasks


class FakeCall:
    """Stands in for the worker stream: records what the sender writes."""

    def __init__(self) -> None:
        self.written: list[worker_pb2.WorkerMessage] = []
        self.wrote = asyncio.Event()

    async def write(self, message: worker_pb2.WorkerMessage) -> None:
        self.written.append(message)
        self.wrote.set()


def save(name: str) -> tuple[str, worker_pb2.StepSave]:
    return ("step", worker_pb2.StepSave(execution_id="7", lease_token="t", name=name,
                                        result_json="1"))


def names(message: worker_pb2.WorkerMessage) -> list[str]:
    return [s.name for s in message.step_saves.items]


async def written(call: FakeCall, count: int) -> None:
    async def enough() -> None:
        while len(call.written) < count:
            call.wrote.clear()
            await call.wrote.wait()

    await asyncio.wait_for(enough(), timeout=2)


def run_sender(scenario: Any) -> None:
    async def main() -> None:
        worker = Worker([sample_tasks.plain], "127.0.0.1:1")
        worker._steps_landed = asyncio.Event()
        call = FakeCall()
        outbox: asyncio.Queue[Any] = asyncio.Queue()
        sender = asyncio.create_task(worker._sender(call, outbox))  # type: ignore[arg-type]
        try:
            await scenario(worker, call, outbox)
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    asyncio.run(main())


def test_saves_made_during_a_commit_go_together_once_it_is_acknowledged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runtime, "STEP_GATHER_MAX", 30.0)  # only the acknowledgement ends it

    async def scenario(worker: Worker, call: FakeCall, outbox: asyncio.Queue[Any]) -> None:
        outbox.put_nowait(save("a"))
        await written(call, 1)  # nothing in flight: sent at once
        assert names(call.written[0]) == ["a"]
        outbox.put_nowait(save("b"))
        outbox.put_nowait(save("c"))
        await asyncio.sleep(0.05)
        assert len(call.written) == 1, "b and c wait while a is being committed"
        worker._on_step_acks(worker_pb2.StepAcks(items=[
            worker_pb2.StepAck(execution_id="7", name="a", status=worker_pb2.WRITE_STATUS_OK,
                               result_json="1")]))
        await written(call, 2)
        assert names(call.written[1]) == ["b", "c"]

    run_sender(scenario)


def test_an_unacknowledged_batch_holds_the_next_one_back_only_briefly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runtime, "STEP_GATHER_MAX", 0.1)

    async def scenario(worker: Worker, call: FakeCall, outbox: asyncio.Queue[Any]) -> None:
        outbox.put_nowait(save("a"))
        await written(call, 1)
        loop = asyncio.get_running_loop()
        began = loop.time()
        outbox.put_nowait(save("b"))
        await written(call, 2)  # no acknowledgement ever comes
        assert names(call.written[1]) == ["b"]
        assert loop.time() - began >= runtime.STEP_GATHER_MAX * 0.9

    run_sender(scenario)


def test_a_burst_of_saves_goes_at_once_even_while_a_batch_is_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runtime, "STEP_GATHER_MAX", 30.0)  # waiting would time the test out

    async def scenario(worker: Worker, call: FakeCall, outbox: asyncio.Queue[Any]) -> None:
        outbox.put_nowait(save("a"))
        await written(call, 1)
        burst = [f"s{i}" for i in range(runtime.STEP_BATCH_ALONE)]
        for name in burst:
            outbox.put_nowait(save(name))
        await written(call, 2)  # no acknowledgement of "a" needed
        assert names(call.written[1]) == burst

    run_sender(scenario)


def test_batches_are_split_to_stay_under_the_coordinator_message_limit() -> None:
    saves = [("step", worker_pb2.StepSave(execution_id=str(i), lease_token="t", name="s",
                                          result_json="x" * 1000)) for i in range(10)]
    messages = runtime._coalesce(saves, budget=2500)  # two results of 1,000 bytes fit
    assert [len(m.step_saves.items) for m in messages] == [2, 2, 2, 2, 2]
    assert [s.execution_id for m in messages for s in m.step_saves.items] == [
        str(i) for i in range(10)]
    one = runtime._coalesce(saves[:1], budget=10)  # an item alone is never held back
    assert len(one) == 1 and len(one[0].step_saves.items) == 1


def test_results_over_the_announced_limit_are_refused_before_sending() -> None:
    limits = runtime._Limits(step_result_bytes=100, result_bytes=100, message_bytes=1000)
    assert limits.refuse("x" * 25, limits.step_result_bytes) == ""
    assert limits.refuse('"' + "é" * 60 + '"', 100) == (
        "result_json: payload is 122 bytes; the limit is 100 bytes")
    assert runtime._Limits().refuse("x" * 10**6, 0) == ""  # nothing announced: not checked
    assert limits.message_budget == 500
