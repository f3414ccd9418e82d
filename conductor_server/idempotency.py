"""Request ids of Invoke and InvokeBatch: which keys are accepted and how long they are kept.

A client sends one request id per logical call and the same id on every retry of it; the
coordinator stores the first call's answer under that id (in the invoke's own transaction,
under a primary key, so two racing retries cannot both create executions) and answers any
later call with the same id from that record.
"""

from __future__ import annotations

import re
from datetime import timedelta

from .models import InvalidArgument

#: How long a request id is remembered at least: far longer than any client retries a call
#: (the Python client gives up after its timeout, 30 s by default), long enough for a job
#: runner to retry a failed invoke hours later with the same id.
RETENTION = timedelta(hours=24)
MAX_LENGTH = 128
_ALLOWED = re.compile(r"[A-Za-z0-9._:-]+")


def check_request_id(value: str) -> str | None:
    """The request id of a call, or None when it has none (empty)."""
    if not value:
        return None
    if len(value) > MAX_LENGTH:
        raise InvalidArgument("request_id", f"{len(value)} characters; at most {MAX_LENGTH}")
    if not _ALLOWED.fullmatch(value):
        raise InvalidArgument(
            "request_id", f"{value[:40]!r} has characters other than A-Z a-z 0-9 - _ . :"
        )
    return value
