"""Transactions that PostgreSQL rolled back to break a deadlock (or a serialization conflict)
are tried again.

Some lock orders cannot be made the same everywhere: a cancel locks the parent's row and
then its children's (the cascade trigger), while a child that finishes locks its own row and
then its parent's (to count it off the parent's wait); a wait that times out cancels the
children of its step under the parent's lock. When two of those meet, PostgreSQL aborts one
of them after deadlock_timeout. Its whole transaction was rolled back, so running it again
is safe and is what the caller asked for; only when every try was aborted does the error
reach the caller (UNAVAILABLE: "retry").
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from psycopg import errors

log = logging.getLogger(__name__)

#: the aborts that say "try again": nothing of the transaction was kept
RETRIED = (errors.DeadlockDetected, errors.SerializationFailure)
#: tries in all (the first and the retries)
TRIES = 5
#: pause before the first retry, doubled before each later one (drawn from half to all of it,
#: so that the two sides of a deadlock do not meet again in step)
FIRST_PAUSE = 0.02

P = ParamSpec("P")
R = TypeVar("R")


def retried(run: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Decorate a coroutine function that runs one transaction (or one autocommitted
    statement): it is called again when PostgreSQL rolled it back for a deadlock or a
    serialization conflict, up to TRIES times in all."""

    what = getattr(run, "__qualname__", repr(run))

    @functools.wraps(run)
    async def again(*args: P.args, **kwargs: P.kwargs) -> R:
        pause = FIRST_PAUSE
        for attempt in range(1, TRIES + 1):
            try:
                return await run(*args, **kwargs)
            except RETRIED as exc:
                if attempt == TRIES:
                    log.warning("%s: rolled back %d times (%s); giving up", what, TRIES,
                                type(exc).__name__)
                    raise
                log.info("%s: rolled back (%s); trying again", what, type(exc).__name__)
                await asyncio.sleep(pause * random.uniform(0.5, 1.0))
                pause *= 2
        raise AssertionError("unreachable: the last try returns or raises")

    return again
