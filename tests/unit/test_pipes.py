"""The pool pipes' writer: what goes into one write."""

from __future__ import annotations

import pickle
import queue
from typing import Any

from conductor_worker.pipes import write_batches


class _Scripted:
    """A queue whose messages arrive as scripted: each entry is what one get() returns, or
    queue.Empty when a get with a timeout finds nothing in time."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script

    def get(self, timeout: float | None = None) -> Any:
        item = self.script.pop(0)
        if item is queue.Empty:
            assert timeout is not None, "a blocking get cannot time out"
            raise queue.Empty
        return item

    def empty(self) -> bool:
        return True  # nothing is waiting at the moment each message is looked at


class _Conn:
    def __init__(self) -> None:
        self.writes: list[list[Any]] = []

    def send_bytes(self, data: bytes) -> None:
        self.writes.append(pickle.loads(data))


def test_without_gather_each_message_waiting_alone_is_a_write() -> None:
    conn = _Conn()
    assert write_batches(_Scripted([("a",), ("b",), None]), conn)  # type: ignore[arg-type]
    assert conn.writes == [[("a",)], [("b",)]]


def test_gather_lets_messages_that_follow_closely_share_a_write() -> None:
    conn = _Conn()
    script = [("a",), ("b",), queue.Empty, ("c",), None]
    assert write_batches(_Scripted(script), conn, gather=0.001)  # type: ignore[arg-type]
    assert conn.writes == [[("a",), ("b",)], [("c",)]]
