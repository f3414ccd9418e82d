"""The framing both ends of a pool pipe use: pickled lists of message tuples."""

from __future__ import annotations

import pickle
import queue
from multiprocessing.connection import Connection
from typing import Any

#: messages per write at most
MAX_BATCH = 256


def write_batches(outq: queue.SimpleQueue[tuple[Any, ...] | None], conn: Connection) -> bool:
    """Send queued messages, as many per write as are waiting, until the None sentinel
    (returns True once everything before it was sent) or until the pipe breaks (False)."""
    while True:
        batch = [outq.get()]
        while len(batch) < MAX_BATCH and not outq.empty():
            batch.append(outq.get())
        stop = None in batch
        if stop:  # send what came before the sentinel, then end
            batch = batch[: batch.index(None)]
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
