"""Flag values: their types, the checks that name the flag, and the exit statuses."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:  # argparse's class of `add_subparsers()` has no public name
    Subcommands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

#: exit status of a command that failed (e.g. the coordinator refused), and of bad usage
EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A flag's value cannot be used; the message names the flag."""


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(text)
        return value

    parse.__name__ = f"integer {low}..{high}"
    return parse


def bounded_float(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = float(text)
        if not low <= value <= high:  # (NaN is in no range)
            raise ValueError(text)
        return value

    parse.__name__ = f"number {low:g}..{high:g}"
    return parse


def seconds(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(text)
    return value


seconds.__name__ = "number of seconds >= 0"
int32 = bounded_int(-(2**31), 2**31 - 1)
port = bounded_int(0, 65535)
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def level(text: str) -> str:
    if text.upper() not in _LEVELS:
        raise ValueError(text)
    return text.upper()


level.__name__ = "log level (" + ", ".join(_LEVELS) + ")"


def auth_token(args: argparse.Namespace) -> str | None:
    """The bearer token in the file of --auth-token-file, if given."""
    path = getattr(args, "auth_token_file", None)
    if not path:
        return None
    try:
        token = Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or exc
        raise UsageError(f"--auth-token-file: cannot read {path}: {why}") from exc
    if not token:
        raise UsageError(f"--auth-token-file: {path} is empty")
    return token


def json_flag(text: str, flag: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{flag} is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise UsageError(f"{flag} is nested too deeply") from exc


def time_flag(text: str | None, flag: str) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(f"{flag}: {text!r} is not an ISO 8601 time") from exc
    if when.tzinfo is None:
        raise UsageError(f"{flag}: {text!r} needs a UTC offset, e.g. 2026-01-31T22:00:00+01:00")
    try:
        return when.astimezone(UTC)
    except OverflowError as exc:
        raise UsageError(f"{flag}: {text!r} is out of range") from exc
