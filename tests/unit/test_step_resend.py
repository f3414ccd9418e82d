"""conductor_worker.child: a step save whose answer does not come is sent again every
STEP_RESEND seconds (saves are idempotent), so a save or an answer lost between the pool
process and the database cannot hold a run, and its heartbeated lease, forever. The save
sent again is marked so, and the worker's main process logs where it saw that save last,
which names the part of the way where it (or its answer) was lost.

Each pool-process case runs in a process of its own: a PipeLink ends its process (os._exit)
once the other end of its pipe closes, as a pool process must."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import pickle
import threading
from typing import Any

import pytest

from conductor.v1 import worker_pb2

from .test_lease_keys import TASK, leases, make, step_ack

KEY = ("7", "token")
#: the pipes of the case running in this process, kept open until it reported
_KEEP: list[Any] = []


def _read_steps(conn: Any, count: int) -> list[tuple[Any, ...]]:
    from conductor_worker.pipes import read_batch

    steps: list[tuple[Any, ...]] = []
    while len(steps) < count:
        assert conn.poll(10), f"only {len(steps)} step messages arrived"
        steps += [m for m in read_batch(conn) if m[0] == "step"]
    return steps


def _answer(conn: Any, name: str, recorded: str) -> None:
    conn.send_bytes(pickle.dumps([("step_ack", KEY, name, recorded, "")]))


def _sync_case() -> tuple[Any, ...]:
    from conductor_worker import child

    child.STEP_RESEND = 0.2
    parent, mine = multiprocessing.Pipe()
    _KEEP.extend((parent, mine))
    link = child.PipeLink(mine)
    got: list[str] = []
    saver = threading.Thread(target=lambda: got.append(link.save_step(KEY, "s", '"mine"')))
    saver.start()
    first, again = _read_steps(parent, 2)  # nobody answered the first
    _answer(parent, "s", '"recorded"')
    saver.join(10)
    return first, again, got


def _async_case() -> tuple[Any, ...]:
    from conductor_worker import child

    child.STEP_RESEND = 0.2
    parent, mine = multiprocessing.Pipe()
    _KEEP.extend((parent, mine))

    async def main() -> tuple[Any, ...]:
        link = child.PipeLink(mine, asyncio.get_running_loop())
        save = asyncio.create_task(link.save_step_async(KEY, "s", '"mine"'))
        first, again = await asyncio.to_thread(_read_steps, parent, 2)
        _answer(parent, "s", '"recorded"')
        return first, again, [await asyncio.wait_for(save, 10)]

    return asyncio.run(main())


def _run(case: str, results: Any) -> None:
    try:
        results.put(("ok", globals()[case]()))
    except BaseException as exc:  # reported to the test
        results.put(("error", repr(exc)))
    results.close()
    results.join_thread()  # sent before the pipes close (and the link ends the process)


@pytest.mark.parametrize("case", ["_sync_case", "_async_case"])
def test_an_unanswered_save_is_sent_again_until_answered(case: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    process = ctx.Process(target=_run, args=(case, results))
    process.start()
    try:
        status, value = results.get(timeout=60)
    finally:
        process.join(10)
        if process.is_alive():
            process.kill()
    assert status == "ok", value
    first, again, got = value
    assert first == ("step", KEY, "s", '"mine"')
    assert again == ("step", KEY, "s", '"mine"', True)  # the same save, marked as sent again
    assert got == ['"recorded"']  # the recorded result wins, as for any save


# -- the worker's main process: where was the first one lost? ------------------------------


class FakeCall:
    """The stream's writing end: records what the sender writes."""

    def __init__(self) -> None:
        self.written: list[worker_pb2.WorkerMessage] = []

    async def write(self, message: worker_pb2.WorkerMessage) -> None:
        self.written.append(message)


async def _through_sender(worker: Any) -> list[worker_pb2.WorkerMessage]:
    """Let the worker's sender write what is queued (as on a stream), then stop it."""
    call = FakeCall()
    sender = asyncio.create_task(worker._sender(call, worker._outbox))
    for _ in range(100):
        await asyncio.sleep(0.001)
        if worker._outbox.empty() and call.written:
            break
    sender.cancel()
    await asyncio.gather(sender, return_exceptions=True)
    return call.written


def _saves(messages: list[worker_pb2.WorkerMessage]) -> list[tuple[str, str]]:
    return [(i.execution_id, i.name) for m in messages for i in m.step_saves.items]


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_a_save_sent_again_that_never_reached_the_worker_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        worker, pool = make()
        worker._on_coordinator_message(leases(KEY))
        worker._on_pool_message(TASK, ("step", KEY, "s", '"mine"', True))  # the first: lost
        assert _saves(await _through_sender(worker)) == [("7", "s")]  # it goes up now
        assert pool.acks == []

    with caplog.at_level(logging.INFO, logger="conductor_worker.runtime"):
        asyncio.run(scenario())
    [warning] = _warnings(caplog)
    assert "execution 7: step 's' sent again" in warning
    assert "this process never had it (lost between the pool process and this process)" in (
        warning)


def test_a_save_sent_again_after_it_went_up_the_stream_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        worker, pool = make()
        worker._on_coordinator_message(leases(KEY))
        worker._on_pool_message(TASK, ("step", KEY, "s", '"mine"'))
        assert _saves(await _through_sender(worker)) == [("7", "s")]
        worker._on_pool_message(TASK, ("step", KEY, "s", '"mine"', True))  # no answer came
        assert _saves(await _through_sender(worker)) == [("7", "s")]  # the same save again
        worker._on_coordinator_message(step_ack(KEY, "s", worker_pb2.WRITE_STATUS_OK))
        assert pool.acks == [(KEY, "s", "1", "")]
        assert worker.pending_steps == {}

    with caplog.at_level(logging.INFO, logger="conductor_worker.runtime"):
        asyncio.run(scenario())
    [warning] = _warnings(caplog)
    assert "it went up the stream" in warning
    assert "and no answer came back (lost on the stream, in the coordinator" in warning


def test_a_save_sent_again_after_its_answer_was_handed_over_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        worker, pool = make()
        worker._on_coordinator_message(leases(KEY))
        worker._on_pool_message(TASK, ("step", KEY, "s", '"mine"'))
        await _through_sender(worker)
        worker._on_coordinator_message(step_ack(KEY, "s", worker_pb2.WRITE_STATUS_OK))
        assert pool.acks == [(KEY, "s", "1", "")]  # handed to the pool: lost on the pipe
        worker._on_pool_message(TASK, ("step", KEY, "s", '"mine"', True))
        # asked again, it is saved again: the coordinator answers with the recorded result
        assert _saves(await _through_sender(worker)) == [("7", "s")]

    with caplog.at_level(logging.INFO, logger="conductor_worker.runtime"):
        asyncio.run(scenario())
    [warning] = _warnings(caplog)
    assert "its answer was handed to the pool process" in warning
    assert "(lost between this process and the pool process, unless" in warning


def test_a_save_sent_again_while_there_is_no_stream_is_no_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        worker, pool = make()
        worker._on_coordinator_message(leases(KEY))
        worker._outbox = None  # the stream ended; the save waits for the next one
        worker._on_pool_message(TASK, ("step", KEY, "s", '"mine"'))
        worker._on_pool_message(TASK, ("step", KEY, "s", '"mine"', True))
        assert list(worker.pending_steps) == [(KEY, "s")] and pool.acks == []

    with caplog.at_level(logging.INFO, logger="conductor_worker.runtime"):
        asyncio.run(scenario())
    assert _warnings(caplog) == []
    assert any("waits for a stream to the coordinator" in r.getMessage()
               for r in caplog.records)


def test_the_answers_kept_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from conductor_worker import runtime

    monkeypatch.setattr(runtime, "ANSWERED_KEPT", 3)

    async def scenario() -> None:
        worker, _ = make()
        worker._on_coordinator_message(leases(KEY))
        for n in range(5):
            worker._on_pool_message(TASK, ("step", KEY, f"s{n}", "1"))
            worker._on_coordinator_message(step_ack(KEY, f"s{n}", worker_pb2.WRITE_STATUS_OK))
        assert list(worker._answered) == [(KEY, "s2"), (KEY, "s3"), (KEY, "s4")]

    asyncio.run(scenario())

