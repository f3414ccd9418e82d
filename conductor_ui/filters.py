"""The executions filter of the list page (and of bulk actions on what it shows): read from
query or form fields, checked with messages that name the field, and turned back into the
client's arguments and into links."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from conductor_worker.encoding import STATES

#: the filter's fields, as named in the page's form and its links
FIELDS = ("task", "state", "queue", "created_after", "created_before", "parent", "payload")
#: most key=value terms in a payload search
MAX_TERMS = 20


class FilterError(ValueError):
    """A filter field cannot be used; `field` names it."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


@dataclass(frozen=True)
class ExecutionFilter:
    """What the list shows (empty fields do not filter)."""

    task: str = ""
    state: str = ""
    queue: str = ""
    created_after: str = ""
    created_before: str = ""
    parent: str = ""
    payload: str = ""
    terms: dict[str, Any] = field(default_factory=dict, compare=False)
    after: datetime | None = field(default=None, compare=False)
    before: datetime | None = field(default=None, compare=False)

    @property
    def empty(self) -> bool:
        return not any(getattr(self, name) for name in FIELDS)

    def query(self, **extra: str) -> str:
        """The filter (and `extra` fields) as a query string, empty fields left out."""
        items = [(name, getattr(self, name)) for name in FIELDS if getattr(self, name)]
        items += [(k, v) for k, v in extra.items() if v]
        return urlencode(items)

    def page_args(self) -> dict[str, Any]:
        """Arguments of AsyncClient.page (and, without page_token, of bulk)."""
        return {
            "task": self.task or None,
            "state": self.state or None,
            "queue": self.queue or None,
            "parent_id": self.parent or None,
            "created_after": self.after,
            "created_before": self.before,
            "payload": self.terms or None,
        }


def read_filter(fields: Mapping[str, str]) -> ExecutionFilter:
    """The filter in query or form fields; FilterError naming the first bad field."""
    values = {name: (fields.get(name) or "").strip() for name in FIELDS}
    if values["state"] and values["state"] not in STATES:
        raise FilterError("state", f"must be one of {', '.join(STATES)}")
    if values["parent"] and not (values["parent"].isdigit() and len(values["parent"]) < 20):
        raise FilterError("parent", "must be an execution id (digits)")
    after = _time(values["created_after"], "created_after")
    before = _time(values["created_before"], "created_before")
    if after and before and after >= before:
        raise FilterError("created_before", "must be later than created_after")
    return ExecutionFilter(**values, terms=payload_terms(values["payload"]), after=after,
                           before=before)


def payload_terms(text: str) -> dict[str, Any]:
    """`key=value` terms (separated by spaces, commas or new lines; keys are dotted paths)
    as {path: value}; a value that parses as JSON is that value (7, true, "7"), anything
    else is the text itself."""
    terms: dict[str, Any] = {}
    for raw in text.replace(",", " ").split():
        key, sep, value = raw.partition("=")
        if not sep or not key:
            raise FilterError("payload", f"{raw[:40]!r} is not key=value")
        if any(not part for part in key.split(".")):
            raise FilterError("payload", f"{key[:40]!r} is not a dotted path")
        try:
            terms[key] = json.loads(value)
        except ValueError:
            terms[key] = value
    if len(terms) > MAX_TERMS:
        raise FilterError("payload", f"at most {MAX_TERMS} terms")
    return terms


def _time(text: str, name: str) -> datetime | None:
    """An ISO time (the form's datetime-local value has no zone: it is read as UTC)."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise FilterError(name, f"{text[:40]!r} is not a time (YYYY-MM-DDTHH:MM, UTC)") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
