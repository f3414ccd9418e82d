"""Retries of client calls answered UNAVAILABLE: the coordinator is restarting or out of
reach, or its database is (the coordinator then says "database unavailable; retry").

Only calls that are safe to repeat are retried: reads, waits, PutSchedule (create or
replace) and invokes, which carry a request id so that a repeat creates nothing new. The
pause doubles from 50 ms to at most 2 s, each drawn between half and all of that (jitter,
so that many clients do not retry in step), and no retry starts after the call's deadline.
"""

from __future__ import annotations

import random
import time

import grpc

FIRST_PAUSE = 0.05
MAX_PAUSE = 2.0


def status_code(exc: grpc.RpcError) -> grpc.StatusCode | None:
    """The status of a failed call: a blocking call's error is a grpc.Call, an awaited
    one's a grpc.aio.AioRpcError; both have code() and details()."""
    if isinstance(exc, grpc.Call | grpc.aio.AioRpcError):
        return exc.code()
    return None


def unavailable(exc: grpc.RpcError) -> bool:
    return status_code(exc) == grpc.StatusCode.UNAVAILABLE


class Retrying:
    """The retry budget of one call: until `deadline` (a time.monotonic() value)."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self._pause = FIRST_PAUSE

    def left(self) -> float:
        """Seconds until the deadline (at least a millisecond, for a call's timeout)."""
        return max(0.001, self.deadline - time.monotonic())

    def next_pause(self) -> float | None:
        """Seconds to wait before the next try; None when the deadline would pass before
        that try could start."""
        pause = self._pause * random.uniform(0.5, 1.0)
        self._pause = min(self._pause * 2, MAX_PAUSE)
        if time.monotonic() + pause >= self.deadline:
            return None
        return pause
