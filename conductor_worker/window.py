"""Adaptive lease windows: how many leases of a task a worker accepts at once.

A task with no `prefetch` set gets a window sized from what the worker measures: enough
leases to keep every slot busy while the next ones are on their way, by Little's law, so
short tasks stream and long ones are not hoarded. The window is one lease per slot plus the
runs the task completes in WINDOW_AHEAD seconds at its current rate (large enough for the
coordinator to lease in large batches, where most of a short task's cost lies), at most
MAX_PREFETCH more, and at least one spare while runs take under SPARE_UNDER seconds. Each
time it moves by a quarter or more, the worker tells the coordinator (CapacityUpdate).
"""

from __future__ import annotations

import math
import time

#: seconds of work to have leased ahead of the running slots (covers the lease round trip
#: and the coordinator's batching, with room to spare)
WINDOW_AHEAD = 0.1
#: the most leases held beyond one per slot
MAX_PREFETCH = 1024
#: runs shorter than this (seconds, on average) get one spare lease even when 100 ms of
#: work is less than one run: a slot then starts its next run without waiting for the
#: coordinator, and a spare held while another worker idles delays one run by under this
SPARE_UNDER = 1.0
#: seconds between measurements of the completion rate
MEASURE_EVERY = 0.05


class LeaseWindow:
    """The adaptive window of one task on one worker."""

    def __init__(self, slots: int, now: float | None = None) -> None:
        self.slots = slots
        self.current = 2 * slots  # until the first measurement
        self._rate = 0.0  # completions per second, smoothed
        self._count = 0
        self._since = time.monotonic() if now is None else now

    def completed(self, count: int = 1, now: float | None = None) -> int | None:
        """Count finished runs; returns the new window when it should change, else None."""
        self._count += count
        now = time.monotonic() if now is None else now
        elapsed = now - self._since
        if elapsed < MEASURE_EVERY:
            return None
        rate = self._count / elapsed
        # rising fast (a burst of short runs) and falling smoothly
        self._rate = rate if rate > self._rate else 0.7 * self._rate + 0.3 * rate
        self._count, self._since = 0, now
        ahead = math.floor(self._rate * WINDOW_AHEAD)
        if ahead == 0 and self._rate * SPARE_UNDER > self.slots:
            ahead = 1  # runs under a second: one spare hides the refill's round trip
        wanted = self.slots + min(MAX_PREFETCH, ahead)
        if abs(wanted - self.current) * 4 >= self.current or (
            wanted <= self.slots < self.current
        ):
            self.current = wanted
            return wanted
        return None
