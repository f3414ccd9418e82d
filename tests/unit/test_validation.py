"""conductor_server.validation: every API input is checked, errors name the field (SPEC 4)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conductor_server import validation
from conductor_server.models import InvalidArgument, NotFound, RetryPolicy, TaskDef
from conductor_server.validation import (
    check_payload,
    check_task_def,
    new_executions,
    page_size,
    parse_execution_id,
    wait_timeout,
)

NOW = datetime(2026, 5, 5, 12, 0, tzinfo=UTC)
TASK = TaskDef(name="send_email", max_attempts=7)


def raises_field(field: str) -> Any:
    """pytest.raises(InvalidArgument) whose field and message start are `field`."""
    return pytest.raises(InvalidArgument, match=rf"^{re.escape(field)}: ")


# --- check_payload ----------------------------------------------------------------------------


def test_empty_payload_is_null() -> None:
    assert check_payload("", "payload_json", 100) == "null"


@pytest.mark.parametrize("text", ["null", "{}", '{"a": [1, 2.5, "x", true]}', '"caf\u00e9"', "0"])
def test_valid_payload_is_returned_unchanged(text: str) -> None:
    assert check_payload(text, "payload_json", 1000) == text


@pytest.mark.parametrize("text", ["{", "{'a': 1}", "undefined", "[1,]", "1 2", "\ufeff{}"])
def test_invalid_json_is_rejected_naming_field(text: str) -> None:
    with raises_field("payload_json") as info:
        check_payload(text, "payload_json", 1000)
    assert "not valid JSON" in str(info.value)


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"x": -Infinity}'])
def test_nan_and_infinity_are_not_json(text: str) -> None:
    with raises_field("payloads_json[3]"):
        check_payload(text, "payloads_json[3]", 1000)


def test_oversize_payload_names_field_and_sizes() -> None:
    text = '"' + "a" * 20 + '"'  # 22 bytes
    with raises_field("payload_json") as info:
        check_payload(text, "payload_json", 10)
    message = str(info.value)
    assert "22 bytes" in message
    assert "10 bytes" in message


def test_size_limit_counts_utf8_bytes_and_is_inclusive() -> None:
    text = '"\u00e9\u00e9\u00e9\u00e9"'  # 6 characters, 10 bytes in UTF-8
    assert check_payload(text, "payload_json", 10) == text
    with raises_field("payload_json") as info:
        check_payload(text, "payload_json", 9)
    assert "10 bytes" in str(info.value)


def test_oversize_is_reported_before_json_errors() -> None:
    with raises_field("payload_json") as info:
        check_payload("{" * 50, "payload_json", 10)
    assert "50 bytes" in str(info.value)


def test_nul_escape_is_rejected() -> None:
    # PostgreSQL jsonb cannot store U+0000.
    with raises_field("result_json") as info:
        check_payload('{"a": "x\\u0000y"}', "result_json", 1000)
    assert "u0000" in str(info.value)


def test_escaped_backslash_before_u0000_is_valid() -> None:
    text = r'{"path": "C:\\u0000"}'  # decodes to 'C:\u0000' literally, no NUL character
    assert check_payload(text, "payload_json", 1000) == text


# --- new_executions ---------------------------------------------------------------------------


def invoke(task: TaskDef | None = TASK, **overrides: Any) -> Any:
    args: dict[str, Any] = {
        "task_name": task.name if task is not None else "missing",
        "payloads": ['{"to": "a@b.c"}'],
        "now": NOW,
        "run_at": None,
        "delay_seconds": 0.0,
        "priority": 0,
        "queue": "",
        "dedupe_key": "",
        "max_attempts": 0,
        "payload_limit": 1000,
        "batch": False,
    }
    args.update(overrides)
    return new_executions(task, **args)


def test_defaults_are_filled_in() -> None:
    new = invoke()
    assert new.task == "send_email"
    assert new.payloads == ['{"to": "a@b.c"}']
    assert new.run_at == NOW
    assert new.priority == 0
    assert new.queue == "default"
    assert new.max_attempts == 7  # 0 means the task's default
    assert new.dedupe_key is None


def test_explicit_options_are_kept() -> None:
    at = NOW + timedelta(hours=1)
    new = invoke(run_at=at, priority=-5, queue="bulk", dedupe_key="k1", max_attempts=2)
    assert (new.run_at, new.priority, new.queue, new.dedupe_key, new.max_attempts) == (
        at,
        -5,
        "bulk",
        "k1",
        2,
    )


def test_delay_is_added_to_now() -> None:
    assert invoke(delay_seconds=90.5).run_at == NOW + timedelta(seconds=90.5)


def test_empty_payload_becomes_null() -> None:
    assert invoke(payloads=[""]).payloads == ["null"]


def test_unknown_task_is_not_found() -> None:
    with pytest.raises(NotFound, match="missing"):
        invoke(None, task_name="missing")


def test_task_name_required() -> None:
    with raises_field("task"):
        invoke(None, task_name="")


def test_run_at_and_delay_together_rejected() -> None:
    with raises_field("options.delay_seconds"):
        invoke(run_at=NOW + timedelta(hours=1), delay_seconds=5.0)


@pytest.mark.parametrize("delay", [-1.0, -0.001, math.nan, math.inf])
def test_bad_delay_rejected(delay: float) -> None:
    with raises_field("options.delay_seconds"):
        invoke(delay_seconds=delay)


def test_dedupe_key_in_batch_rejected() -> None:
    with raises_field("options.dedupe_key"):
        invoke(payloads=["1", "2"], batch=True, dedupe_key="k")


def test_batch_payload_errors_name_the_index() -> None:
    with raises_field("payloads_json[1]"):
        invoke(payloads=["1", "{oops", "3"], batch=True)


def test_batch_needs_at_least_one_payload() -> None:
    with raises_field("payloads_json"):
        invoke(payloads=[], batch=True)


def test_batch_keeps_payload_order() -> None:
    assert invoke(payloads=["1", "", "[3]"], batch=True).payloads == ["1", "null", "[3]"]


@pytest.mark.parametrize("priority", [validation.PRIORITY_LIMIT, -validation.PRIORITY_LIMIT])
def test_priority_at_bound_accepted(priority: int) -> None:
    assert invoke(priority=priority).priority == priority


@pytest.mark.parametrize(
    "priority", [validation.PRIORITY_LIMIT + 1, -validation.PRIORITY_LIMIT - 1, 2**40]
)
def test_priority_beyond_bound_rejected(priority: int) -> None:
    with raises_field("options.priority"):
        invoke(priority=priority)


def test_negative_max_attempts_rejected() -> None:
    with raises_field("options.max_attempts"):
        invoke(max_attempts=-1)


def test_queue_and_dedupe_key_lengths() -> None:
    assert invoke(queue="q" * validation.MAX_QUEUE_NAME).queue == "q" * validation.MAX_QUEUE_NAME
    with raises_field("options.queue"):
        invoke(queue="q" * (validation.MAX_QUEUE_NAME + 1))
    with raises_field("options.dedupe_key"):
        invoke(dedupe_key="k" * (validation.MAX_DEDUPE_KEY + 1))


def test_oversize_payload_in_invoke_names_payload_json() -> None:
    with raises_field("payload_json"):
        invoke(payloads=['"' + "x" * 2000 + '"'])


# --- parse_execution_id, page_size, wait_timeout ------------------------------------------------


@pytest.mark.parametrize("text, expected", [("1", 1), ("42", 42), (str(2**63 - 1), 2**63 - 1)])
def test_parse_execution_id_accepts_positive_ints(text: str, expected: int) -> None:
    assert parse_execution_id(text) == expected


@pytest.mark.parametrize("text", ["", "0", "-1", "1.5", "abc", " 1", "1e3", str(2**63)])
def test_parse_execution_id_rejects(text: str) -> None:
    with raises_field("page_token"):
        parse_execution_id(text, "page_token")


def test_parse_execution_id_rejects_superscript_digit() -> None:
    with raises_field("execution_id"):
        parse_execution_id("\u00b2")


@pytest.mark.parametrize("size, expected", [(0, 100), (1, 1), (1000, 1000)])
def test_page_size(size: int, expected: int) -> None:
    assert page_size(size) == expected


@pytest.mark.parametrize("size", [-1, 1001])
def test_page_size_out_of_range(size: int) -> None:
    with raises_field("page_size"):
        page_size(size)


@pytest.mark.parametrize("seconds", [0.0, 0.5, 3600.0])
def test_wait_timeout_accepts(seconds: float) -> None:
    assert wait_timeout(seconds) == seconds


@pytest.mark.parametrize("seconds", [-0.1, math.nan, math.inf])
def test_wait_timeout_rejects(seconds: float) -> None:
    with raises_field("timeout_seconds"):
        wait_timeout(seconds)


# --- check_task_def ---------------------------------------------------------------------------

PREFIX = "register.tasks[0]"


def test_check_task_def_accepts_and_returns_task() -> None:
    task = TaskDef(name="t", window_start="22:00", window_end="06:00", timezone="Europe/Berlin")
    assert check_task_def(task, 4, PREFIX) is task


@pytest.mark.parametrize(
    "task, capacity, field",
    [
        (TaskDef(name=""), 1, f"{PREFIX}.name"),
        (TaskDef(name="x" * 201), 1, f"{PREFIX}.name"),
        (TaskDef(name="t", max_attempts=0), 1, f"{PREFIX}.max_attempts"),
        (TaskDef(name="t"), 0, f"{PREFIX}.capacity"),
        (TaskDef(name="t", retry=RetryPolicy(initial_backoff=0)), 1, f"{PREFIX}.retry"),
        (
            TaskDef(name="t", retry=RetryPolicy(initial_backoff=10, max_backoff=5)),
            1,
            f"{PREFIX}.retry",
        ),
        (TaskDef(name="t", retry=RetryPolicy(multiplier=0.5)), 1, f"{PREFIX}.retry"),
        (TaskDef(name="t", retry=RetryPolicy(jitter=1.5)), 1, f"{PREFIX}.retry"),
        (TaskDef(name="t", retry=RetryPolicy(jitter=math.nan)), 1, f"{PREFIX}.retry"),
        (TaskDef(name="t", concurrency=-1), 1, f"{PREFIX}.concurrency"),
        (TaskDef(name="t", timezone="Mars/Base"), 1, f"{PREFIX}.timezone"),
        (TaskDef(name="t", window_start="24:00", window_end="06:00"), 1, f"{PREFIX}.window.start"),
        (TaskDef(name="t", window_start="09:00"), 1, f"{PREFIX}.window.end"),
        (TaskDef(name="t", window_start="09:00", window_end="09:00"), 1, f"{PREFIX}.window"),
    ],
)
def test_check_task_def_rejects_naming_field(task: TaskDef, capacity: int, field: str) -> None:
    with raises_field(field):
        check_task_def(task, capacity, PREFIX)


def test_check_task_def_bad_zone_with_window_names_prefixed_field() -> None:
    task = TaskDef(name="t", window_start="09:00", window_end="17:00", timezone="Mars/Base")
    with raises_field(f"{PREFIX}.timezone"):
        check_task_def(task, 1, PREFIX)


def test_check_task_def_rejects_nan_multiplier() -> None:
    with raises_field(f"{PREFIX}.retry"):
        check_task_def(TaskDef(name="t", retry=RetryPolicy(multiplier=math.nan)), 1, PREFIX)
