"""Input checks for the client API: every call is validated before anything is written."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from .models import InvalidArgument, NewExecutions, NotFound, TaskDef
from .windows import validate_window, zone

MAX_QUEUE_NAME = 100
MAX_DEDUPE_KEY = 500
MAX_BATCH = 100_000
PRIORITY_LIMIT = 1_000_000


def parse_execution_id(value: str, field_name: str = "execution_id") -> int:
    """Execution ids are positive integers in text form."""
    if not (value.isascii() and value.isdigit()) or not 0 < int(value) < 2**63:
        raise InvalidArgument(field_name, f"{value!r} is not an execution id")
    return int(value)


def check_payload(text: str, field_name: str, limit: int) -> str:
    """Return the payload as JSON text ("null" when empty) or raise naming the field."""
    if not text:
        return "null"
    size = len(text.encode())
    if size > limit:
        raise InvalidArgument(field_name, f"payload is {size} bytes; the limit is {limit} bytes")
    try:
        value = _DECODER.decode(text)
    except ValueError as exc:
        raise InvalidArgument(field_name, f"not valid JSON: {exc}") from exc
    if "\\u0000" in text and _has_nul(value):  # PostgreSQL's jsonb cannot store NUL
        raise InvalidArgument(field_name, "JSON strings may not contain \\u0000 (NUL)")
    return text


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    return False


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def new_executions(
    task: TaskDef | None,
    task_name: str,
    payloads: Sequence[str],
    *,
    now: datetime,
    run_at: datetime | None,
    delay_seconds: float,
    priority: int,
    queue: str,
    dedupe_key: str,
    max_attempts: int,
    payload_limit: int,
    batch: bool,
) -> NewExecutions:
    """Validate an invoke request; the field names are those of the protobuf messages."""
    if not task_name:
        raise InvalidArgument("task", "required")
    if task is None:
        raise NotFound(f"task: no task named {task_name!r} is registered")
    payload_field = "payloads_json" if batch else "payload_json"
    if batch and not 0 < len(payloads) <= MAX_BATCH:
        raise InvalidArgument(payload_field, f"needs 1 to {MAX_BATCH} payloads")
    checked = [
        check_payload(p, f"{payload_field}[{i}]" if batch else payload_field, payload_limit)
        for i, p in enumerate(payloads)
    ]
    if batch and dedupe_key:
        raise InvalidArgument("options.dedupe_key", "not allowed in InvokeBatch")
    return NewExecutions(
        task=task.name,
        payloads=checked,
        run_at=_run_at(now, run_at, delay_seconds),
        priority=_priority(priority),
        queue=_queue(queue),
        max_attempts=_max_attempts(max_attempts, task),
        dedupe_key=_dedupe_key(dedupe_key),
    )


def _run_at(now: datetime, run_at: datetime | None, delay_seconds: float) -> datetime:
    if run_at is not None and delay_seconds:
        raise InvalidArgument("options.delay_seconds", "give run_at or delay_seconds, not both")
    if not math.isfinite(delay_seconds) or delay_seconds < 0:
        raise InvalidArgument("options.delay_seconds", f"must be >= 0, got {delay_seconds}")
    if run_at is not None:
        return run_at
    return now + timedelta(seconds=delay_seconds)


def _priority(priority: int) -> int:
    if abs(priority) > PRIORITY_LIMIT:
        raise InvalidArgument("options.priority", f"must be within +-{PRIORITY_LIMIT}")
    return priority


def _queue(queue: str) -> str:
    if len(queue) > MAX_QUEUE_NAME:
        raise InvalidArgument("options.queue", f"at most {MAX_QUEUE_NAME} characters")
    return queue or "default"


def _max_attempts(max_attempts: int, task: TaskDef) -> int:
    if max_attempts < 0:
        raise InvalidArgument("options.max_attempts", f"must be >= 1, got {max_attempts}")
    return max_attempts or task.max_attempts


def _dedupe_key(key: str) -> str | None:
    if len(key) > MAX_DEDUPE_KEY:
        raise InvalidArgument("options.dedupe_key", f"at most {MAX_DEDUPE_KEY} characters")
    return key or None


def page_size(size: int) -> int:
    if not 0 <= size <= 1000:
        raise InvalidArgument("page_size", f"must be 0..1000, got {size}")
    return size or 100


def wait_timeout(seconds: float) -> float:
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidArgument("timeout_seconds", f"must be >= 0, got {seconds}")
    return seconds


def check_task_def(task: TaskDef, capacity: int, prefix: str) -> TaskDef:
    """Validate a task definition sent by a worker at registration."""
    if not task.name or len(task.name) > 200:
        raise InvalidArgument(f"{prefix}.name", "required, at most 200 characters")
    if task.max_attempts < 1:
        raise InvalidArgument(f"{prefix}.max_attempts", "must be >= 1")
    if capacity < 1:
        raise InvalidArgument(f"{prefix}.capacity", "must be >= 1")
    retry = task.retry
    numbers = (retry.initial_backoff, retry.max_backoff, retry.multiplier, retry.jitter)
    if not all(math.isfinite(n) for n in numbers):
        raise InvalidArgument(f"{prefix}.retry", "backoff settings must be finite numbers")
    if not (0 < retry.initial_backoff <= retry.max_backoff):
        raise InvalidArgument(f"{prefix}.retry", "need 0 < initial_backoff <= max_backoff")
    if retry.multiplier < 1 or not 0 <= retry.jitter <= 1:
        raise InvalidArgument(f"{prefix}.retry", "need multiplier >= 1 and 0 <= jitter <= 1")
    if task.concurrency < 0:
        raise InvalidArgument(f"{prefix}.concurrency", "must be >= 0")
    if task.window_start or task.window_end:
        validate_window(
            task.window_start or "",
            task.window_end or "",
            task.timezone,
            f"{prefix}.window",
            f"{prefix}.timezone",
        )
    else:
        zone(task.timezone, f"{prefix}.timezone")
    return task


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
