"""Time windows: when a task may run, in its own time zone, DST included.

A window ("HH:MM", "HH:MM") is compared with the wall clock of the task's time zone. A start
later than the end is an overnight window. When the opening time does not exist on a day
(spring forward), the window opens at the first instant after the gap; when it exists twice
(fall back), it opens at the first of the two. While the wall clock repeats an hour, the
window is open whenever the wall-clock time is inside it.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .models import InvalidArgument, TaskDef

_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


def parse_hhmm(value: str, field_name: str) -> time:
    match = _HHMM.fullmatch(value)
    if match is None:
        raise InvalidArgument(field_name, f"{value!r} is not a 24-hour time HH:MM")
    return time(int(match.group(1)), int(match.group(2)))


def zone(name: str, field_name: str = "timezone") -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise InvalidArgument(field_name, f"{name!r} is not an IANA time zone") from exc


def validate_window(
    start: str, end: str, timezone: str, prefix: str = "window", zone_field: str = "timezone"
) -> None:
    """Raise InvalidArgument naming the field when the window or zone is not valid."""
    if parse_hhmm(start, f"{prefix}.start") == parse_hhmm(end, f"{prefix}.end"):
        raise InvalidArgument(prefix, f"start and end are both {start}; a window needs a length")
    zone(timezone, zone_field)


def _window(task: TaskDef) -> tuple[time, time, ZoneInfo] | None:
    if not task.window_start or not task.window_end:
        return None
    return (
        parse_hhmm(task.window_start, "window.start"),
        parse_hhmm(task.window_end, "window.end"),
        zone(task.timezone),
    )


def _inside(t: time, start: time, end: time) -> bool:
    if start < end:
        return start <= t < end
    return t >= start or t < end


def _exists(moment: datetime, tz: ZoneInfo) -> bool:
    back = moment.astimezone(UTC).astimezone(tz)
    return back.replace(tzinfo=None) == moment.replace(tzinfo=None)


def first_instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The first instant on `day` whose wall-clock time in `tz` is `at` or later."""
    early = datetime.combine(day, at, tz).replace(fold=0)
    if _exists(early, tz):
        return early  # (for a repeated time, fold=0 is the first occurrence)
    # In a gap: search the transition between the two readings of the wall time.
    low = datetime.combine(day, at, tz).replace(fold=1).timestamp()
    high = early.timestamp()
    low, high = min(low, high), max(low, high)
    while high - low > 0.5:
        mid = (low + high) / 2
        if datetime.fromtimestamp(mid, tz).time() >= at:
            high = mid
        else:
            low = mid
    return datetime.fromtimestamp(round(high), tz)


def _instants(day: date, at: time, tz: ZoneInfo) -> list[datetime]:
    """Every instant on `day` when the wall clock reaches `at` (two on a fall-back day)."""
    found = [first_instant(day, at, tz)]
    late = datetime.combine(day, at, tz).replace(fold=1)
    if _exists(late, tz) and late.astimezone(UTC) != found[0].astimezone(UTC):
        found.append(late)
    return found


def _next_wall_time(now: datetime, at: time, tz: ZoneInfo) -> datetime:
    local = now.astimezone(tz)
    for offset in range(-1, 3):
        for candidate in _instants(local.date() + timedelta(days=offset), at, tz):
            if candidate > now:
                return candidate
    raise AssertionError("unreachable: a wall time recurs every day")


def next_opening(task: TaskDef, now: datetime) -> datetime | None:
    """None when `task` may run at `now`; otherwise when its window next opens."""
    window = _window(task)
    if window is None:
        return None
    start, end, tz = window
    if _inside(now.astimezone(tz).time(), start, end):
        return None
    return _next_wall_time(now, start, tz)


def closes_at(task: TaskDef, now: datetime) -> datetime | None:
    """When the window open at `now` closes (None when the task has no window)."""
    window = _window(task)
    if window is None:
        return None
    _, end, tz = window
    return _next_wall_time(now, end, tz)
