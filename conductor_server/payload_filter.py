"""Payload filters of ListExecutions and BulkExecutions: a JSON object of dotted payload
paths and the values they must equal, checked, and the nested object it implies (a payload
that matches the filter contains it, so `payload @> contains` is tested first)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from google.protobuf.message import Message

from . import validation
from .models import InvalidArgument
from .workflow_validation import check_filter


@dataclass(frozen=True)
class PayloadFilter:
    """A checked payload filter (both None: no filter)."""

    match_json: str | None = None
    contains_json: str | None = None


#: no payload filter
NO_FILTER = PayloadFilter()


def payload_filter(text: str, field_name: str, limit: int) -> PayloadFilter:
    """Check a payload filter (INVALID_ARGUMENT naming `field_name`); empty: none."""
    match = check_filter(text, field_name, limit)
    if match is None:
        return PayloadFilter()
    return PayloadFilter(match, json.dumps(_nested(json.loads(match))))


def _nested(flat: dict[str, Any]) -> dict[str, Any]:
    """{"a.b": 1, "a.c": 2} as {"a": {"b": 1, "c": 2}}: what every matching payload contains.
    A path that is a prefix of another ({"a": .., "a.b": ..}) keeps only the longer one's
    containment (conductor_matches still checks both)."""
    out: dict[str, Any] = {}
    for key in sorted(flat, key=lambda k: k.count(".")):
        *parents, last = key.split(".")
        node = out
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        if last not in node:
            node[last] = flat[key]
    return out


def created_range(message: Message, prefix: str) -> tuple[datetime | None, datetime | None]:
    """The created_after / created_before fields of a request or filter, checked (their
    names in errors start with `prefix`)."""
    after, before = (_time(message, name, prefix) for name in ("created_after", "created_before"))
    if after is not None and before is not None and after >= before:
        raise InvalidArgument(f"{prefix}created_before", "must be later than created_after")
    return after, before


def _time(message: Message, name: str, prefix: str) -> datetime | None:
    if not message.HasField(name):
        return None
    ts = getattr(message, name)
    return validation.check_time(ts.seconds, ts.nanos, f"{prefix}{name}")
