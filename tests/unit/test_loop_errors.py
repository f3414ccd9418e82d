"""conductor_server.loop_errors: a failed background pass, logged by kind."""

from __future__ import annotations

import logging

import psycopg
import pytest

from conductor_server.loop_errors import log_failed_pass

log = logging.getLogger("test-loop")


def test_a_database_outage_is_one_line_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    try:
        raise psycopg.OperationalError("connection is lost\nDETAIL: more text")
    except psycopg.OperationalError:
        log_failed_pass(log, "leasing %s failed", "t")
    [record] = caplog.records
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert record.getMessage() == "leasing t failed: database unavailable (connection is lost)"


def test_anything_else_keeps_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    try:
        raise ValueError("a bug")
    except ValueError:
        log_failed_pass(log, "reaper failed")
    [record] = caplog.records
    assert record.levelno == logging.ERROR and record.exc_info is not None
