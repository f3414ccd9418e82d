"""Durations of retention options and flags: seconds or a number with a unit."""

from __future__ import annotations

import pytest

from conductor_server.durations import parse_duration
from conductor_server.settings import Settings, from_environment
from conductor_worker import TaskDefinitionError, task
from conductor_worker.durations import seconds


@pytest.mark.parametrize("parse", [parse_duration, seconds])
@pytest.mark.parametrize(("text", "expected"), [
    ("0", 0.0), ("90", 90.0), ("1.5", 1.5), ("30s", 30.0), ("15m", 900.0), ("12h", 43200.0),
    ("7d", 604800.0), ("2w", 1209600.0), (" 3 d ", 259200.0),
])
def test_durations_are_read(parse, text, expected) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize("parse", [parse_duration, seconds])
@pytest.mark.parametrize("text", ["", "7 days", "-1", "1y", "d", "1e3", "nan", "99999999w"])
def test_malformed_durations_are_refused(parse, text) -> None:
    with pytest.raises(ValueError, match=r"duration|100 years"):
        parse(text)


def test_sdk_takes_numbers_but_not_booleans_or_negatives() -> None:
    assert seconds(60) == 60.0
    for bad in (True, -5, float("inf"), None, [1]):
        with pytest.raises(ValueError):
            seconds(bad)


def test_task_options_name_the_bad_retention() -> None:
    def handler(event, ctx):  # pragma: no cover - never run
        return None

    with pytest.raises(TaskDefinitionError, match=r"retention\['failed'\]: '3 months'"):
        task(name="bad-retention", retention={"failed": "3 months"})(handler)
    with pytest.raises(TaskDefinitionError, match=r"retention: unknown state 'done'"):
        task(name="bad-retention", retention={"done": "1d"})(handler)
    with pytest.raises(TaskDefinitionError, match=r"redact_after: -1"):
        task(name="bad-redact", redact_after=-1)(handler)
    good = task(name="good-retention", retention={"succeeded": "1d", "failed": 0},
                redact_after="12h")(handler)
    assert good.options.retention == (("succeeded", 86400.0), ("failed", 0.0))
    assert good.options.redact_after == 43200.0


def test_coordinator_retention_settings_from_environment() -> None:
    settings = from_environment({"CONDUCTOR_RETENTION_SUCCEEDED": "1d",
                                 "CONDUCTOR_REDACT_AFTER": "0"})
    assert settings.retention_succeeded == 86400.0 and settings.redact_after == 0.0
    assert settings.retention_failed == 30 * 86400.0 and Settings().redact_after is None
    with pytest.raises(ValueError, match=r"CONDUCTOR_RETENTION_FAILED: cannot read '2 weeks'"):
        from_environment({"CONDUCTOR_RETENTION_FAILED": "2 weeks"})
    with pytest.raises(ValueError, match=r"--retention-cancelled: must be 0 to 100 years"):
        Settings(retention_cancelled=-1)
    with pytest.raises(ValueError, match=r"--maintenance-batch: must be > 0"):
        Settings(maintenance_batch=0)
