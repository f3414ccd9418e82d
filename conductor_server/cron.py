"""Cron arithmetic: fire times of a 5-field expression in a time zone, DST included.

Expressions are evaluated on the wall clock of the schedule's time zone, then mapped to
instants like windows are:
- a wall time that does not exist (spring forward) fires at the first instant after the gap,
  e.g. "30 2 * * *" in Europe/Berlin fires at 03:00 CEST on 2026-03-29; several fire times in
  the gap collapse into that one fire;
- a wall time that exists twice (fall back) fires once, at its first occurrence, e.g. "30 2
  * * *" fires at 02:30 CEST (00:30 UTC) on 2026-10-25, not again at 02:30 CET.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from .models import InvalidArgument
from .windows import first_instant

MISSED_POLICIES = ("latest", "skip", "all")
#: under the "skip" policy, fires later than this are dropped
SKIP_GRACE = timedelta(seconds=10)
#: most fire times examined in one catch-up (a minutely schedule down for a week is ~10k)
MAX_CATCH_UP = 100_000


def validate_cron(expression: str, field_name: str = "cron") -> str:
    """A standard 5-field expression, or raise InvalidArgument naming the field."""
    expression = " ".join(expression.split())
    shown = repr(expression[:80])
    if len(expression.split(" ")) != 5 or not croniter.is_valid(expression):
        raise InvalidArgument(
            field_name, f"{shown} is not a 5-field cron expression (m h dom mon dow)"
        )
    try:  # valid fields can still name a day that never comes (e.g. "0 0 30 2 *")
        croniter(expression, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except (ValueError, OverflowError) as exc:
        raise InvalidArgument(field_name, f"{shown} never fires") from exc
    return expression


def fire_times(expression: str, tz: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """Fire instants strictly after `after`, in order, each once."""
    local = after.astimezone(tz).replace(tzinfo=None)
    wall = croniter(expression, local - timedelta(minutes=1))
    last: datetime | None = None
    while True:
        naive = wall.get_next(datetime)
        instant = first_instant(naive.date(), naive.time(), tz)
        if instant > after and instant != last:
            last = instant
            yield instant


def next_fire(expression: str, tz: ZoneInfo, after: datetime) -> datetime:
    return next(fire_times(expression, tz, after))


@functools.lru_cache(maxsize=4096)  # schedules due together often share expression and time
def due_fires(
    expression: str,
    tz: ZoneInfo,
    next_fire_at: datetime,
    now: datetime,
    missed: str,
    limit: int,
) -> tuple[tuple[datetime, ...], datetime]:
    """The fire times to run now and the next fire time after `now`.

    `next_fire_at` (<= now) is the first fire not yet handled. Policies for fires that are
    due at once (after downtime): "latest" runs only the most recent, "all" runs the most
    recent `limit` of them, "skip" runs only those at most SKIP_GRACE old.
    """
    keep: deque[datetime] = deque(maxlen=limit if missed == "all" else None)
    for count, instant in enumerate(
        fire_times(expression, tz, next_fire_at - timedelta(microseconds=1))
    ):
        if instant > now:
            return _apply_policy(tuple(keep), now, missed), instant
        if missed == "latest":
            keep.clear()
        keep.append(instant)
        if count >= MAX_CATCH_UP:
            break
    return _apply_policy(tuple(keep), now, missed), next_fire(expression, tz, now)


def _apply_policy(
    due: tuple[datetime, ...], now: datetime, missed: str
) -> tuple[datetime, ...]:
    if missed == "skip":
        return tuple(t for t in due if now - t <= SKIP_GRACE)
    return due
