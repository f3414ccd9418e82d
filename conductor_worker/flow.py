"""Checks of @task's flow-control options (key, rate_limit, queue) and of worker queue names,
so that a bad one fails at import time, naming the option. The coordinator checks the same
rules again (conductor_server/flow_validation.py)."""

from __future__ import annotations

import re

_RATE = re.compile(r"\s*(\d{1,7})\s*/\s*(\d{0,6})\s*([smhd])\s*")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATH_PART = re.compile(r"[A-Za-z0-9_\-]{1,100}")
NAME = re.compile(r"[A-Za-z0-9_.:\-]{1,100}")
MAX_RATE_COUNT = 1_000_000
MAX_RATE_PERIOD = 7 * 24 * 3600.0
#: the largest per-key cap (`key_concurrency`; the coordinator checks the same)
MAX_KEY_CONCURRENCY = 1_000_000


def rate_problem(text: object) -> str | None:
    """Why `text` is not a rate limit ("100/s", "10/m", "5/10s", "1000/h", "50000/d")."""
    match = _RATE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        return (f"{text!r} is not a rate limit like '100/s', '10/m', '5/10s', '1000/h' or "
                "'50000/d'")
    count = int(match.group(1))
    period = (int(match.group(2)) if match.group(2) else 1) * _UNITS[match.group(3)]
    if not 1 <= count <= MAX_RATE_COUNT:
        return f"the count must be 1..{MAX_RATE_COUNT}, got {count}"
    if not 0 < period <= MAX_RATE_PERIOD:
        return "the period must be more than 0 and at most 7 days"
    return None


def key_problem(path: object) -> str | None:
    """Why `path` is not a dotted payload path ("customer.id")."""
    if not isinstance(path, str) or not path:
        return f"must be a dotted path of payload fields like 'customer.id', got {path!r}"
    parts = path.split(".")
    if len(path) > 200 or len(parts) > 10 or not all(_PATH_PART.fullmatch(p) for p in parts):
        return (f"{path!r} is not a dotted path of field names (letters, digits, _ and -; "
                "at most 10 parts)")
    return None


def name_problem(name: object, what: str) -> str | None:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        return f"{name!r} is not a {what} name (1-100 letters, digits and _ . : -)"
    return None


def parse_queues(text: str) -> tuple[str, ...]:
    """`--queues a,b` -> ("a", "b"); ValueError naming the bad one."""
    queues = tuple(q.strip() for q in text.split(","))
    for q in queues:
        problem = name_problem(q, "queue")
        if problem is not None:
            raise ValueError(problem)
    if len(set(queues)) != len(queues):
        raise ValueError("lists a queue twice")
    return queues
