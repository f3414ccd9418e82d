"""How the worker runs its pools, read once from arguments and CONDUCTOR_* variables.

    CONDUCTOR_START_METHOD        forkserver (default) or spawn
    CONDUCTOR_POOL_IDLE_TIMEOUT   seconds a pool process may sit idle before it stops
                                  (default 60; 0 keeps every started process)
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

START_METHODS = ("forkserver", "spawn")
DEFAULT_IDLE_TIMEOUT = 60.0


@dataclass(frozen=True)
class PoolSettings:
    """The worker's pool lifecycle settings."""

    #: how pool processes start: forked from a server process that preloaded the task
    #: modules ("forkserver"), or each a fresh interpreter ("spawn")
    start_method: str = "forkserver"
    #: seconds an idle pool process lives before it stops (down to the task's min_processes)
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT

    def __post_init__(self) -> None:
        if self.start_method not in START_METHODS:
            raise ValueError(
                f"start method: {self.start_method!r} is not one of {', '.join(START_METHODS)}")
        if not isinstance(self.idle_timeout, int | float) or not (
            math.isfinite(self.idle_timeout) and self.idle_timeout >= 0
        ):
            raise ValueError(
                f"pool idle timeout: must be a number of seconds >= 0, got {self.idle_timeout!r}")

    @classmethod
    def resolve(
        cls,
        *,
        start_method: str | None = None,
        idle_timeout: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> PoolSettings:
        """Arguments win over CONDUCTOR_* variables, which win over defaults."""
        env = os.environ if env is None else env
        method = start_method or env.get("CONDUCTOR_START_METHOD") or "forkserver"
        if idle_timeout is None:
            text = env.get("CONDUCTOR_POOL_IDLE_TIMEOUT", "")
            try:
                idle_timeout = float(text) if text else DEFAULT_IDLE_TIMEOUT
            except ValueError:
                raise ValueError(
                    f"CONDUCTOR_POOL_IDLE_TIMEOUT: {text!r} is not a number of seconds"
                ) from None
        return cls(start_method=method, idle_timeout=idle_timeout)
