"""conductor_server.windows: time windows in the task's zone, DST included (SPEC section 3)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from conductor_server.models import InvalidArgument, TaskDef
from conductor_server.windows import (
    closes_at,
    first_instant,
    next_opening,
    parse_hhmm,
    validate_window,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def in_utc(value: datetime | None) -> datetime | None:
    """Compare instants in UTC: == between zones is always False for an ambiguous wall time."""
    return None if value is None else value.astimezone(UTC)


def window_task(start: str | None, end: str | None, timezone: str = "UTC") -> TaskDef:
    return TaskDef(name="w", window_start=start, window_end=end, timezone=timezone)


# --- no window ----------------------------------------------------------------------------


@pytest.mark.parametrize("start, end", [(None, None), ("", ""), ("09:00", None), (None, "17:00")])
def test_no_window_means_always_open_and_never_closes(start: str | None, end: str | None) -> None:
    task = window_task(start, end)
    now = utc(2026, 5, 5, 3, 0)
    assert next_opening(task, now) is None
    assert closes_at(task, now) is None


# --- normal (same-day) window -----------------------------------------------------------------

DAY = window_task("09:00", "17:00")


@pytest.mark.parametrize(
    "now, expected",
    [
        (utc(2026, 5, 5, 9, 0), None),  # start is inclusive
        (utc(2026, 5, 5, 12, 30), None),
        (utc(2026, 5, 5, 16, 59), None),
        (utc(2026, 5, 5, 8, 0), utc(2026, 5, 5, 9, 0)),  # before: opens later today
        (utc(2026, 5, 5, 17, 0), utc(2026, 5, 6, 9, 0)),  # end is exclusive: tomorrow
        (utc(2026, 5, 5, 23, 59), utc(2026, 5, 6, 9, 0)),
        (utc(2026, 5, 5, 0, 0), utc(2026, 5, 5, 9, 0)),
    ],
)
def test_normal_window_next_opening(now: datetime, expected: datetime | None) -> None:
    assert next_opening(DAY, now) == expected


def test_normal_window_closes_at_same_day_end() -> None:
    assert closes_at(DAY, utc(2026, 5, 5, 10, 0)) == utc(2026, 5, 5, 17, 0)


def test_normal_window_in_task_zone_not_utc() -> None:
    task = window_task("09:00", "17:00", "Europe/Berlin")
    # 06:30 UTC is 08:30 CEST in July: closed, opens at 09:00 CEST = 07:00 UTC.
    opening = next_opening(task, utc(2026, 7, 1, 6, 30))
    assert opening == utc(2026, 7, 1, 7, 0)
    assert opening is not None and opening.utcoffset() == timedelta(hours=2)
    # 07:30 UTC is 09:30 CEST: open, closes at 17:00 CEST = 15:00 UTC.
    assert next_opening(task, utc(2026, 7, 1, 7, 30)) is None
    assert closes_at(task, utc(2026, 7, 1, 7, 30)) == utc(2026, 7, 1, 15, 0)
    # In winter 06:30 UTC is 07:30 CET: closed, opens at 09:00 CET = 08:00 UTC.
    assert next_opening(task, utc(2026, 1, 15, 6, 30)) == utc(2026, 1, 15, 8, 0)


def test_now_in_another_zone_is_compared_as_an_instant() -> None:
    # 12:00 in New York (EDT) is 16:00 UTC: inside 09:00-17:00 UTC.
    now = datetime(2026, 7, 1, 12, 0, tzinfo=NEW_YORK)
    assert next_opening(DAY, now) is None
    assert closes_at(DAY, now) == utc(2026, 7, 1, 17, 0)


# --- overnight window -----------------------------------------------------------------------

NIGHT = window_task("22:00", "06:00")


def test_overnight_open_late_evening_closes_next_morning() -> None:
    now = utc(2026, 5, 5, 23, 0)
    assert next_opening(NIGHT, now) is None
    assert closes_at(NIGHT, now) == utc(2026, 5, 6, 6, 0)


def test_overnight_open_early_morning_closes_same_morning() -> None:
    now = utc(2026, 5, 5, 3, 0)
    assert next_opening(NIGHT, now) is None
    assert closes_at(NIGHT, now) == utc(2026, 5, 5, 6, 0)


def test_overnight_closed_at_noon_opens_same_evening() -> None:
    assert next_opening(NIGHT, utc(2026, 5, 5, 12, 0)) == utc(2026, 5, 5, 22, 0)


@pytest.mark.parametrize(
    "now, expected",
    [
        (utc(2026, 5, 5, 22, 0), None),
        (utc(2026, 5, 5, 0, 0), None),
        (utc(2026, 5, 5, 5, 59), None),
        (utc(2026, 5, 5, 6, 0), utc(2026, 5, 5, 22, 0)),
        (utc(2026, 5, 5, 21, 59), utc(2026, 5, 5, 22, 0)),
    ],
)
def test_overnight_boundaries(now: datetime, expected: datetime | None) -> None:
    assert next_opening(NIGHT, now) == expected


# --- DST ------------------------------------------------------------------------------------


def test_first_instant_of_an_ordinary_wall_time() -> None:
    got = first_instant(date(2026, 7, 1), time(9, 30), BERLIN)
    assert got == utc(2026, 7, 1, 7, 30)


@pytest.mark.parametrize(
    "day, at, tz, expected",
    [
        (date(2026, 3, 29), time(2, 30), BERLIN, utc(2026, 3, 29, 1, 0)),
        (date(2026, 3, 29), time(2, 59), BERLIN, utc(2026, 3, 29, 1, 0)),
        (date(2026, 3, 8), time(2, 30), NEW_YORK, utc(2026, 3, 8, 7, 0)),
    ],
)
def test_first_instant_in_spring_forward_gap_is_end_of_gap(
    day: date, at: time, tz: ZoneInfo, expected: datetime
) -> None:
    assert in_utc(first_instant(day, at, tz)) == expected


def test_spring_forward_window_opens_at_first_instant_after_gap() -> None:
    task = window_task("02:30", "05:00", "Europe/Berlin")
    opening = next_opening(task, utc(2026, 3, 28, 23, 0))  # 00:00 CET, closed
    assert in_utc(opening) == utc(2026, 3, 29, 1, 0)  # 03:00 CEST


def test_spring_forward_window_is_open_right_after_gap() -> None:
    task = window_task("02:30", "05:00", "Europe/Berlin")
    # 01:15 UTC is 03:15 CEST: inside 02:30-05:00 local.
    assert next_opening(task, utc(2026, 3, 29, 1, 15)) is None
    assert closes_at(task, utc(2026, 3, 29, 1, 15)) == utc(2026, 3, 29, 3, 0)


def test_fall_back_opening_is_first_occurrence() -> None:
    # 2026-10-25 Europe/Berlin: 03:00 CEST -> 02:00 CET, 02:30 happens twice.
    got = first_instant(date(2026, 10, 25), time(2, 30), BERLIN)
    assert in_utc(got) == utc(2026, 10, 25, 0, 30)
    task = window_task("02:30", "05:00", "Europe/Berlin")
    assert in_utc(next_opening(task, utc(2026, 10, 24, 23, 0))) == utc(2026, 10, 25, 0, 30)
    assert next_opening(task, utc(2026, 10, 25, 0, 45)) is None  # 02:45 CEST


def test_fall_back_next_opening_is_not_after_an_open_instant() -> None:
    task = window_task("02:30", "05:00", "Europe/Berlin")
    assert next_opening(task, utc(2026, 10, 25, 1, 30)) is None  # 02:30 CET: open
    # 02:15 CET, second pass: whether this counts as open or closed, the window must not be
    # reported to open only tomorrow when it is open again (at the latest) at 01:30 UTC.
    opening = next_opening(task, utc(2026, 10, 25, 1, 15))
    assert opening is None or opening <= utc(2026, 10, 25, 1, 30)


# --- parsing and validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [("00:00", time(0, 0)), ("09:05", time(9, 5)), ("23:59", time(23, 59))],
)
def test_parse_hhmm_accepts_24_hour_times(text: str, expected: time) -> None:
    assert parse_hhmm(text, "f") == expected


@pytest.mark.parametrize("text", ["24:00", "9:00", "12:60", "", "09:00:00", " 09:00", "ab:cd"])
def test_parse_hhmm_rejects_and_names_field(text: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_hhmm(text, "tasks[2].window.start")
    assert info.value.field == "tasks[2].window.start"
    assert str(info.value).startswith("tasks[2].window.start: ")


def test_parse_hhmm_rejects_trailing_newline() -> None:
    with pytest.raises(InvalidArgument):
        parse_hhmm("09:00\n", "window.start")


def test_validate_window_accepts_normal_and_overnight() -> None:
    validate_window("09:00", "17:00", "UTC")
    validate_window("22:00", "06:00", "Europe/Berlin")


@pytest.mark.parametrize(
    "start, end, timezone, field",
    [
        ("24:00", "06:00", "UTC", "window.start"),
        ("9:00", "17:00", "UTC", "window.start"),
        ("09:00", "9:30", "UTC", "window.end"),
        ("09:00", "09:00", "UTC", "window"),
        ("09:00", "17:00", "Mars/Base", "timezone"),
        ("09:00", "17:00", "../etc/passwd", "timezone"),
    ],
)
def test_validate_window_rejects_and_names_field(
    start: str, end: str, timezone: str, field: str
) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_window(start, end, timezone)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_validate_window_uses_prefix_in_field_names() -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_window("10:00", "10:00", "UTC", "tasks[1].window")
    assert info.value.field == "tasks[1].window"
    assert "10:00" in str(info.value)


def test_validate_window_rejects_zone_directory_name() -> None:
    with pytest.raises(InvalidArgument):
        validate_window("09:00", "17:00", "America")
