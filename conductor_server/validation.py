"""Input checks for the client API and the worker stream: everything a caller or a worker
sends is validated before anything is written, and every refusal names the field."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from . import flow_validation
from .models import InvalidArgument, NewExecutions, NotFound, TaskDef
from .windows import validate_window, zone

MAX_QUEUE_NAME = 100
MAX_DEDUPE_KEY = 500
MAX_BATCH = 100_000
PRIORITY_LIMIT = 1_000_000
#: deepest nesting of arrays and objects accepted in any JSON value
MAX_JSON_DEPTH = 100
#: most attempts an execution may have
MAX_ATTEMPTS = 10_000
#: longest delay, backoff or run_at distance accepted (about 100 years)
MAX_SECONDS = 100 * 365 * 24 * 3600.0
#: largest backoff multiplier
MAX_MULTIPLIER = 100.0
#: most leases a worker may hold of one task
MAX_CAPACITY = 100_000
#: most static schedules of one task, and most non-retryable error names
MAX_PER_TASK = 100
#: values echoed in error messages are cut to this many characters
SHOWN = 80
#: the range of times PostgreSQL and Python can both hold
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)


@dataclass(frozen=True)
class Limits:
    """The configurable limits (Settings carries them; docs/limits.md lists them)."""

    payload_bytes: int = 1024 * 1024
    result_bytes: int = 1024 * 1024
    step_result_bytes: int = 1024 * 1024
    error_bytes: int = 64 * 1024
    name_length: int = 200
    register_tasks: int = 1000


def shown(value: object, limit: int = SHOWN) -> str:
    """A value as echoed in an error message: repr, cut to `limit` characters."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(str(value))} characters)"


def check_text(value: str, field_name: str, limit: int, *, required: bool = False) -> str:
    """A name or label: at most `limit` characters, no NUL (PostgreSQL cannot store it)."""
    if required and not value:
        raise InvalidArgument(field_name, "required")
    if len(value) > limit:
        raise InvalidArgument(field_name, f"at most {limit} characters, got {len(value)}")
    if "\x00" in value:
        raise InvalidArgument(field_name, f"may not contain NUL (\\x00): {shown(value)}")
    return value


def sanitize(text: str, limit_bytes: int) -> str:
    """Text from a handler (an error message): NULs replaced, cut to `limit_bytes` of UTF-8.
    Stored as it comes otherwise: a handler's message is not the worker's fault."""
    text = text.replace("\x00", "\\x00")
    encoded = text.encode("utf-8", "replace")
    if len(encoded) <= limit_bytes:
        return text
    return encoded[:limit_bytes].decode("utf-8", "ignore") + " [truncated]"


def parse_execution_id(value: str, field_name: str = "execution_id") -> int:
    """Execution ids are positive integers in text form."""
    if not (len(value) < 20 and value.isascii() and value.isdigit()) or not 0 < int(value) < 2**63:
        raise InvalidArgument(field_name, f"{shown(value)} is not an execution id")
    return int(value)


def check_time(seconds: int, nanos: int, field_name: str) -> datetime:
    """A protobuf Timestamp's fields as a datetime within the storable range."""
    if not 0 <= nanos < 1_000_000_000:
        raise InvalidArgument(field_name, f"nanos must be 0..999999999, got {nanos}")
    if not EARLIEST.timestamp() <= seconds <= LATEST.timestamp():
        raise InvalidArgument(field_name, "must be between years 0001 and 9999")
    return datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=nanos // 1000)


def check_payload(text: str, field_name: str, limit: int) -> str:
    """Return the payload as JSON text ("null" when empty) or raise naming the field."""
    if not text:
        return "null"
    size = len(text) if text.isascii() else len(text.encode())
    if size > limit:
        raise InvalidArgument(field_name, f"payload is {size} bytes; the limit is {limit} bytes")
    deep = text.count("[") + text.count("{") > MAX_JSON_DEPTH
    try:
        value = _DECODER.decode(text)
    except RecursionError as exc:
        raise InvalidArgument(field_name, f"nested deeper than {MAX_JSON_DEPTH} levels") from exc
    except ValueError as exc:
        raise InvalidArgument(field_name, f"not valid JSON: {shown(str(exc))}") from exc
    if deep and _depth(value) > MAX_JSON_DEPTH:
        raise InvalidArgument(field_name, f"nested deeper than {MAX_JSON_DEPTH} levels")
    if "\\u" in text or "\\U" in text:  # escapes may hide what PostgreSQL cannot store
        _check_escapes(value, field_name)
    return text


def _check_escapes(value: object, field_name: str) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:  # PostgreSQL's jsonb cannot store NUL
                raise InvalidArgument(field_name, "JSON strings may not contain \\u0000 (NUL)")
            if not item.isascii() and _SURROGATE.search(item):
                raise InvalidArgument(
                    field_name, "JSON strings may not contain lone surrogates (e.g. \\ud800)"
                )


_SURROGATE = re.compile("[\ud800-\udfff]")


def _depth(value: object) -> int:
    """Nesting depth of a decoded JSON value, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


_EXPONENT = re.compile(r"[eE]([+-]?\d+)$")


def _parse_float(text: str) -> float:
    """JSON numbers must fit a float (PostgreSQL's numeric refuses huge exponents)."""
    match = _EXPONENT.search(text)
    number = float(text)
    if math.isinf(number) or (match is not None and abs(int(match.group(1))) > 1000):
        raise ValueError(f"number {shown(text)} is out of range")
    return number


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
    trace_context: str = "",
    timeout_seconds: float = 0.0,
    concurrency_key: str = "",
    debounce: float = 0.0,
    throttle: float = 0.0,
    dedupe_keys: Sequence[str] = (),
) -> NewExecutions:
    """Validate an invoke request; the field names are those of the protobuf messages."""
    if not task_name:
        raise InvalidArgument("task", "required")
    if task is None:
        raise NotFound(f"task: no task named {shown(task_name)} is registered")
    payload_field = "payloads_json" if batch else "payload_json"
    if batch and not 0 < len(payloads) <= MAX_BATCH:
        raise InvalidArgument(payload_field, f"needs 1 to {MAX_BATCH} payloads")
    if batch and dedupe_key:
        raise InvalidArgument("options.dedupe_key", "not allowed in InvokeBatch (give each"
                              " item its key in dedupe_keys)")
    keys = _dedupe_keys(dedupe_keys, len(payloads))
    debounce = flow_validation.check_seconds(debounce, "options.debounce_seconds")
    throttle = flow_validation.check_seconds(throttle, "options.throttle_seconds")
    for name, value in (("debounce_seconds", debounce), ("throttle_seconds", throttle)):
        if value and batch:
            raise InvalidArgument(f"options.{name}", "not allowed in InvokeBatch (it works"
                                  " per invoke: use Invoke with a dedupe_key)")
        if value and not dedupe_key:
            raise InvalidArgument(f"options.{name}", "needs options.dedupe_key (the key it"
                                  " works per)")
    if debounce and throttle:
        raise InvalidArgument("options.throttle_seconds", "cannot be combined with"
                              " options.debounce_seconds")
    key = check_text(concurrency_key, "options.concurrency_key", flow_validation.MAX_KEY)
    queue = check_text(queue, "options.queue", MAX_QUEUE_NAME)
    new = NewExecutions(
        task=task.name,
        payloads=[],
        run_at=_run_at(now, run_at, delay_seconds),
        priority=_priority(priority),
        queue=queue or task.queue,
        max_attempts=_max_attempts(max_attempts, task),
        dedupe_key=check_text(dedupe_key, "options.dedupe_key", MAX_DEDUPE_KEY) or None,
        dedupe_keys=keys,
        trace_context=check_trace_context(trace_context),
        timeout=check_timeout(timeout_seconds, "options.timeout_seconds"),
        concurrency_key=key or None,
        key_path=task.key_path,
        keyed=task.keyed,
        debounce=debounce,
        throttle=throttle,
    )
    if debounce:
        new = dataclasses.replace(new, run_at=max(new.run_at, now + timedelta(seconds=debounce)))
    new.payloads.extend(
        check_payload(p, f"{payload_field}[{i}]" if batch else payload_field, payload_limit)
        for i, p in enumerate(payloads)
    )
    return new


def _dedupe_keys(keys: Sequence[str], payloads: int) -> tuple[str | None, ...]:
    """InvokeBatchRequest.dedupe_keys: none, or one per payload ("" for an item without)."""
    if not keys:
        return ()
    if len(keys) != payloads:
        raise InvalidArgument("dedupe_keys", f"needs one per payload ({payloads}), or none;"
                              f" got {len(keys)}")
    return tuple(check_text(k, f"dedupe_keys[{i}]", MAX_DEDUPE_KEY) or None
                 for i, k in enumerate(keys))


#: a W3C traceparent: version, trace id, parent span id, flags (lower-case hex)
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


def check_trace_context(value: str) -> str | None:
    """An invoke's trace context: empty (None) or a W3C traceparent."""
    if not value:
        return None
    if not _TRACEPARENT.fullmatch(value):
        raise InvalidArgument(
            "trace_context", f"not a W3C traceparent (00-<trace id>-<span id>-<flags>): "
            f"{shown(value)}"
        )
    return value


def _run_at(now: datetime, run_at: datetime | None, delay_seconds: float) -> datetime:
    if run_at is not None and delay_seconds:
        raise InvalidArgument("options.delay_seconds", "give run_at or delay_seconds, not both")
    if not (math.isfinite(delay_seconds) and 0 <= delay_seconds <= MAX_SECONDS):
        raise InvalidArgument(
            "options.delay_seconds", f"must be 0..{MAX_SECONDS:.0f}, got {delay_seconds}"
        )
    when = run_at if run_at is not None else now + timedelta(seconds=delay_seconds)
    if when > LATEST:
        raise InvalidArgument("options.run_at", "must be before the year 9999")
    return when


def _priority(priority: int) -> int:
    if abs(priority) > PRIORITY_LIMIT:
        raise InvalidArgument("options.priority", f"must be within +-{PRIORITY_LIMIT}")
    return priority


def check_timeout(seconds: float, field_name: str) -> float | None:
    """An execution timeout in seconds: 0 means none (None), else finite and > 0."""
    if seconds == 0:
        return None
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_SECONDS):
        raise InvalidArgument(field_name, f"must be > 0 and <= {MAX_SECONDS:.0f} seconds"
                              f" (0: none), got {seconds}")
    return seconds


def _max_attempts(max_attempts: int, task: TaskDef) -> int:
    if not 0 <= max_attempts <= MAX_ATTEMPTS:
        raise InvalidArgument(
            "options.max_attempts", f"must be 1..{MAX_ATTEMPTS}, got {max_attempts}"
        )
    return max_attempts or task.max_attempts


def page_size(size: int) -> int:
    if not 0 <= size <= 1000:
        raise InvalidArgument("page_size", f"must be 0..1000, got {size}")
    return size or 100


def wait_timeout(seconds: float) -> float:
    if not (math.isfinite(seconds) and 0 <= seconds <= MAX_SECONDS):
        raise InvalidArgument("timeout_seconds", f"must be 0..{MAX_SECONDS:.0f}, got {seconds}")
    return seconds


def check_task_def(
    task: TaskDef, capacity: int, prefix: str, limits: Limits | None = None
) -> TaskDef:
    """Validate a task definition sent by a worker at registration."""
    limits = limits or Limits()
    check_text(task.name, f"{prefix}.name", limits.name_length, required=True)
    if not 1 <= task.max_attempts <= MAX_ATTEMPTS:
        raise InvalidArgument(f"{prefix}.max_attempts", f"must be 1..{MAX_ATTEMPTS}")
    if not 1 <= capacity <= MAX_CAPACITY:
        raise InvalidArgument(f"{prefix}.capacity", f"must be 1..{MAX_CAPACITY}")
    _check_retry(task, f"{prefix}.retry", limits)
    if not 0 <= task.concurrency <= MAX_CAPACITY:
        raise InvalidArgument(f"{prefix}.concurrency", f"must be 0..{MAX_CAPACITY}")
    check_text(task.timezone, f"{prefix}.timezone", limits.name_length)
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
    for name in ("succeeded", "failed", "cancelled", "redact_after"):
        value = getattr(task.retention, name)
        if value is not None and not (math.isfinite(value) and 0 <= value <= MAX_SECONDS):
            field_name = f"{prefix}.retention.{name}_seconds"
            raise InvalidArgument(field_name, f"must be 0..{MAX_SECONDS:.0f}, got {value}")
    return task


def _check_retry(task: TaskDef, prefix: str, limits: Limits) -> None:
    retry = task.retry
    numbers = (retry.initial_backoff, retry.max_backoff, retry.multiplier, retry.jitter)
    if not all(math.isfinite(n) for n in numbers):
        raise InvalidArgument(prefix, "backoff settings must be finite numbers")
    if not (0 < retry.initial_backoff <= retry.max_backoff <= MAX_SECONDS):
        raise InvalidArgument(
            prefix, f"need 0 < initial_backoff <= max_backoff <= {MAX_SECONDS:.0f} seconds"
        )
    if not (1 <= retry.multiplier <= MAX_MULTIPLIER and 0 <= retry.jitter <= 1):
        raise InvalidArgument(prefix, f"need 1 <= multiplier <= {MAX_MULTIPLIER:.0f} and "
                              "0 <= jitter <= 1")
    if len(retry.non_retryable_errors) > MAX_PER_TASK:
        raise InvalidArgument(f"{prefix}.non_retryable_errors", f"at most {MAX_PER_TASK}")
    for i, name in enumerate(retry.non_retryable_errors):
        check_text(name, f"{prefix}.non_retryable_errors[{i}]", limits.name_length)


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_parse_float)
