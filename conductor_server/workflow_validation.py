"""Checks of workflow input: event names, payload filters, wait timeouts, signal names."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta

from .models import InvalidArgument
from .validation import MAX_SECONDS, check_payload, shown

#: what conductor_emit accepts too (migration 0008)
EVENT_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,200}")
#: keys a filter may have
MAX_FILTER_KEYS = 50
#: most events one task subscribes to
MAX_SUBSCRIPTIONS = 100


def check_event(name: str, field_name: str) -> str:
    if not EVENT_NAME.fullmatch(name or ""):
        raise InvalidArgument(
            field_name, f"{shown(name)} is not an event name (1-200 characters of A-Z a-z 0-9"
            " _ . : -)"
        )
    return name


def check_filter(text: str, field_name: str, limit: int) -> str | None:
    """An equality filter: a JSON object whose keys are dotted paths (a.b.c) into the
    payload; returns its JSON text, or None when empty."""
    if not text:
        return None
    value = json.loads(check_payload(text, field_name, limit))
    if not isinstance(value, dict):
        raise InvalidArgument(field_name, "must be a JSON object of path: value")
    if len(value) > MAX_FILTER_KEYS:
        raise InvalidArgument(field_name, f"at most {MAX_FILTER_KEYS} keys")
    for key in value:
        if not key or any(not part for part in key.split(".")):
            raise InvalidArgument(field_name, f"key {shown(key)} is not a dotted path")
    return json.dumps(value) if value else None


def deadline(now: datetime, seconds: float, field_name: str = "timeout_seconds") -> (
    datetime | None
):
    """When a wait of `seconds` (0: none) times out."""
    if not (math.isfinite(seconds) and 0 <= seconds <= MAX_SECONDS):
        raise InvalidArgument(field_name, f"must be 0..{MAX_SECONDS:.0f}, got {seconds}")
    return now + timedelta(seconds=seconds) if seconds > 0 else None


def check_subscriptions(
    items: list[tuple[str, str]], field_name: str, limit: int
) -> tuple[tuple[str, str], ...]:
    """A task's (event, filter JSON) subscriptions, checked; the filter as stored ('{}'
    when empty)."""
    if len(items) > MAX_SUBSCRIPTIONS:
        raise InvalidArgument(field_name, f"at most {MAX_SUBSCRIPTIONS}")
    events = [event for event, _ in items]
    checked = []
    for j, (event, filter_json) in enumerate(items):
        check_event(event, f"{field_name}[{j}].event")
        if events.index(event) != j:
            raise InvalidArgument(f"{field_name}[{j}].event", "events must be unique per task")
        stored = check_filter(filter_json, f"{field_name}[{j}].filter_json", limit)
        checked.append((event, stored or "{}"))
    return tuple(checked)
