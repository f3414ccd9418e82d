"""Durations in task options: seconds (int or float), or strings such as "90s", "15m",
"12h", "7d", "2w"."""

from __future__ import annotations

import math
import re

_UNIT_SECONDS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_TEXT = re.compile(r"(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[smhdw]?)")
#: longer than this is refused (about 100 years)
MAX_SECONDS = 3_153_600_000.0


def seconds(value: object) -> float:
    """The duration in seconds; ValueError saying what was wrong."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and (match := _TEXT.fullmatch(value.strip())):
        number = float(match["number"]) * _UNIT_SECONDS[match["unit"]]
    else:
        raise ValueError(f"{value!r} is not a duration: use seconds or e.g. '30m', '12h', '7d'")
    if not (math.isfinite(number) and 0 <= number <= MAX_SECONDS):
        raise ValueError(f"{value!r} must be between 0 and 100 years")
    return number
