"""conductor_server.clock.ShiftableClock: tests move time instead of waiting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from conductor_server.clock import ShiftableClock, SystemClock

TOLERANCE = timedelta(seconds=2)


def close_to(actual: datetime, expected: datetime) -> bool:
    return abs(actual - expected) < TOLERANCE


def test_starts_at_system_time_without_start() -> None:
    clock = ShiftableClock()
    assert close_to(clock.now(), datetime.now(UTC))
    assert clock.now().tzinfo is not None


def test_start_argument_sets_time() -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    assert close_to(ShiftableClock(start).now(), start)


def test_set_moves_now_and_notifies_subscribers() -> None:
    clock = ShiftableClock()
    calls: list[datetime] = []
    clock.subscribe(lambda: calls.append(clock.now()))
    target = datetime(2031, 6, 1, 12, 0, tzinfo=UTC)
    clock.set(target)
    assert close_to(clock.now(), target)
    assert len(calls) == 1
    assert close_to(calls[0], target)  # subscribers see the new time


def test_set_accepts_other_zones() -> None:
    clock = ShiftableClock()
    target = datetime(2031, 6, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    clock.set(target)
    assert close_to(clock.now(), datetime(2031, 6, 1, 12, 0, tzinfo=UTC))


def test_advance_moves_now_and_notifies_every_subscriber() -> None:
    clock = ShiftableClock(datetime(2030, 1, 1, tzinfo=UTC))
    first: list[int] = []
    second: list[int] = []
    clock.subscribe(lambda: first.append(1))
    clock.subscribe(lambda: second.append(1))
    before = clock.now()
    clock.advance(timedelta(hours=5))
    assert close_to(clock.now(), before + timedelta(hours=5))
    clock.advance(timedelta(minutes=-30))
    assert close_to(clock.now(), before + timedelta(hours=4, minutes=30))
    assert (len(first), len(second)) == (2, 2)


def test_set_with_naive_datetime_raises_and_changes_nothing() -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    clock = ShiftableClock(start)
    calls: list[int] = []
    clock.subscribe(lambda: calls.append(1))
    with pytest.raises(ValueError, match="timezone-aware"):
        clock.set(datetime(2040, 1, 1))  # noqa: DTZ001
    assert close_to(clock.now(), start)
    assert calls == []


def test_system_clock_is_utc_now() -> None:
    clock = SystemClock()
    assert close_to(clock.now(), datetime.now(UTC))
    assert clock.now().utcoffset() == timedelta(0)
