"""The formats of log lines, in the worker and its pool processes alike: text, where a line
logged about an execution (through `ctx.logger`) names the execution and its attempt so that
`grep` finds everything of one run, or one JSON object per line (`--log-format json`)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

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


_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with extra fields (e.g. execution_id) included."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of "text" or "json"."""
    return JsonFormatter() if log_format == "json" else TextFormatter()
