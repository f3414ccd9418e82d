"""The framing both ends of a pool pipe use: pickled lists of message tuples."""

from __future__ import annotations

import pickle
import queue
from multiprocessing.connection import Connection
from typing import Any

#: messages per write at most (beyond the first item)
MAX_BATCH = 256

#: what a writer thread's queue holds: a message, a list of them, or None (stop)
Outgoing = tuple[Any, ...] | list[tuple[Any, ...]] | None


def write_batches(
    outq: queue.SimpleQueue[Outgoing], conn: Connection, gather: float = 0.0
) -> bool:
    """Send queued messages, as many per write as are waiting, until the None sentinel
    (returns True once everything before it was sent) or until the pipe breaks (False).

    `gather` (seconds): once a message is there, wait that long at most for more before
    writing, as long as more keep coming (handler threads woken together by one batch of
    answers send their next messages a moment apart: one write for all of them instead of a
    write, a wake-up of the other side and a hand-over each)."""
    while True:
        batch: list[tuple[Any, ...]] = []
        stop = False
        item: Outgoing = outq.get()
        while True:
            if item is None:  # send what came before the sentinel, then end
                stop = True
                break
            if isinstance(item, list):
                batch.extend(item)
            else:
                batch.append(item)
            if len(batch) >= MAX_BATCH:
                break
            if outq.empty():
                if not gather:
                    break
                try:
                    item = outq.get(timeout=gather)
                except queue.Empty:
                    break
                continue
            item = outq.get()
        if batch:
            try:
                conn.send_bytes(pickle.dumps(batch, pickle.HIGHEST_PROTOCOL))
            except (OSError, ValueError):
                return False
        if stop:
            return True


def read_batch(conn: Connection) -> list[tuple[Any, ...]]:
    """One write's messages (blocks; EOFError or OSError once the other end is gone)."""
    messages: list[tuple[Any, ...]] = pickle.loads(conn.recv_bytes())
    return messages
