"""Durations as operators write them: seconds, or a number with a unit ("90s", "15m", "12h",
"7d", "2w")."""

from __future__ import annotations

import math
import re

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*")
#: the longest duration accepted: about 100 years
LONGEST = 100 * 365 * 86400.0


def parse_duration(text: str) -> float:
    """Seconds in `text`; ValueError saying what is accepted."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"{text[:80]!r} is not a duration (seconds, or e.g. 30s, 15m, 12h, 7d)")
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not math.isfinite(seconds) or seconds > LONGEST:
        raise ValueError(f"{text[:80]!r} is longer than 100 years")
    return seconds
