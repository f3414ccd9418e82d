"""The text format of log lines: a line logged about an execution (through `ctx.logger`)
names the execution and its attempt, so that `grep` finds everything of one run."""

from __future__ import annotations

import logging

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class TextFormatter(logging.Formatter):
    """Plain text; records with an `execution_id` (and no `event`: the lifecycle lines name
    it themselves) get "[execution ID attempt N]" before their message."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        execution_id = getattr(record, "execution_id", None)
        if execution_id is not None and not hasattr(record, "event"):
            attempt = getattr(record, "attempt", "?")
            record.message = f"[execution {execution_id} attempt {attempt}] {record.message}"
        return super().formatMessage(record)
