"""How the coordinator's background loops (leasing, reaper, scheduler, LISTEN, gauges) report
a failed pass: a database outage in one line per pass, anything else with its traceback."""

from __future__ import annotations

import logging
import sys

import psycopg


def log_failed_pass(logger: logging.Logger, what: str, *args: object) -> None:
    """Call from an `except` block: `what` (a %-format of `args`) failed; the loop goes on."""
    exc = sys.exc_info()[1]
    if isinstance(exc, psycopg.OperationalError):  # connection lost, pool timeout, shutdown
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        logger.warning(what + ": database unavailable (%s)", *args, first)
    else:
        logger.exception(what, *args)
