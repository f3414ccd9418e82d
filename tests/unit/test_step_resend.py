"""conductor_worker.child: a step save whose answer does not come is sent again every
STEP_RESEND seconds (saves are idempotent), so a save or an answer lost between the pool
process and the database cannot hold a run, and its heartbeated lease, forever.

Each case runs in a process of its own: a PipeLink ends its process (os._exit) once the
other end of its pipe closes, as a pool process must."""

from __future__ import annotations

import asyncio
import multiprocessing
import pickle
import threading
from typing import Any

import pytest

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
    assert first == again == ("step", KEY, "s", '"mine"')
    assert got == ['"recorded"']  # the recorded result wins, as for any save
