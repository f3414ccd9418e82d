"""Checks of the flow-control settings a worker registers and an invoke asks for: keys,
rate limits, queues, debounce and throttle (docs/flow-control.md)."""

from __future__ import annotations

import math
import re

from .models import InvalidArgument, TaskDef

#: longest concurrency key (InvokeOptions.concurrency_key or read from the payload)
MAX_KEY = 200
#: deepest key path, and longest path text
MAX_KEY_DEPTH = 10
MAX_KEY_PATH = 200
#: largest N of a rate limit "N/period", and longest period
MAX_RATE_COUNT = 1_000_000
MAX_RATE_PERIOD = 7 * 24 * 3600.0
#: longest debounce or throttle
MAX_DEBOUNCE = 30 * 24 * 3600.0

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RATE = re.compile(r"\s*(\d{1,7})\s*/\s*(\d{0,6})\s*([smhd])\s*")
_PATH_PART = re.compile(r"[A-Za-z0-9_\-]{1,100}")
#: queue names: what a worker's --queues can list (no commas, no spaces)
QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:\-]{1,100}")


def parse_rate_limit(text: str, field_name: str) -> tuple[int, float]:
    """"N/s", "N/m", "N/h", "N/d" or with a count of units ("N/10s") -> (N, seconds)."""
    match = _RATE.fullmatch(text)
    if match is None:
        raise InvalidArgument(field_name, f"{text[:80]!r} is not a rate limit like '100/s',"
                              " '10/m', '5/10s', '1000/h' or '50000/d'")
    count = int(match.group(1))
    period = (int(match.group(2)) if match.group(2) else 1) * _UNITS[match.group(3)]
    if not 1 <= count <= MAX_RATE_COUNT:
        raise InvalidArgument(field_name, f"the count must be 1..{MAX_RATE_COUNT}, got {count}")
    if not 0 < period <= MAX_RATE_PERIOD:
        raise InvalidArgument(field_name, "the period must be more than 0 and at most 7 days")
    return count, period


def parse_key_path(text: str, field_name: str) -> tuple[str, ...]:
    """A dotted payload path ("customer.id") -> its parts; "" -> ()."""
    if not text:
        return ()
    parts = tuple(text.split("."))
    if len(text) > MAX_KEY_PATH or len(parts) > MAX_KEY_DEPTH or not all(
        _PATH_PART.fullmatch(p) for p in parts
    ):
        raise InvalidArgument(field_name, f"{text[:80]!r} is not a dotted path of field names"
                              f" (letters, digits, _ and -; at most {MAX_KEY_DEPTH} parts)")
    return parts


def check_queue_name(name: str, field_name: str) -> str:
    if not QUEUE_NAME.fullmatch(name):
        raise InvalidArgument(field_name, f"{name[:80]!r} is not a queue name (1-100 letters,"
                              " digits and _ . : -)")
    return name


def check_flow(task: TaskDef, prefix: str) -> TaskDef:
    """The flow-control part of a registered task definition."""
    if not 0 <= task.key_concurrency <= 1_000_000:
        raise InvalidArgument(f"{prefix}.key_concurrency", "must be 0..1000000")
    if 0 < task.concurrency < task.key_concurrency:
        raise InvalidArgument(f"{prefix}.key_concurrency", f"must be <= concurrency (the cap"
                              f" over all keys, {task.concurrency}), got {task.key_concurrency}")
    if task.rate_limit_name:
        check_queue_name(task.rate_limit_name, f"{prefix}.rate_limit_name")
    return task


def check_seconds(value: float, field_name: str, most: float = MAX_DEBOUNCE) -> float:
    if not (math.isfinite(value) and 0 <= value <= most):
        raise InvalidArgument(field_name, f"must be 0..{most:.0f} seconds, got {value}")
    return value
