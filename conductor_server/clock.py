"""The coordinator's sense of time, injectable so that tests move time instead of waiting."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Where the coordinator reads the time."""

    def now(self) -> datetime: ...

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call `callback` whenever the clock jumps (never, for the system clock)."""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SystemClock:
    """Wall-clock time in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def subscribe(self, callback: Callable[[], None]) -> None:
        return None


class ShiftableClock:
    """Wall-clock time plus an offset that tests set; time keeps flowing between jumps.

    With `frozen=True` time stands still and moves only by set() and advance().
    """

    def __init__(self, start: datetime | None = None, *, frozen: bool = False) -> None:
        self._offset = timedelta(0)
        self._frozen = frozen
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []
        if start is not None:
            self.set(start)

    def now(self) -> datetime:
        if self._frozen:
            return _EPOCH + self._offset
        return datetime.now(UTC) + self._offset

    def set(self, when: datetime) -> None:
        """Jump to `when` (timezone-aware)."""
        if when.tzinfo is None:
            raise ValueError("ShiftableClock.set needs a timezone-aware datetime")
        with self._lock:
            self._offset = when - (_EPOCH if self._frozen else datetime.now(UTC))
        self._fire()

    def advance(self, delta: timedelta) -> None:
        """Jump forward (or back) by `delta`."""
        with self._lock:
            self._offset += delta
        self._fire()

    def subscribe(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def _fire(self) -> None:
        for callback in list(self._callbacks):
            callback()
