"""What an execution's run logs: ctx.logger forwarding (bounded), the text format, and the
worker's lifecycle lines."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import pytest

from conductor.v1 import common_pb2, worker_pb2
from conductor_cli.logs import CHATTY, configure
from conductor_worker import context as context_module
from conductor_worker.lifecycle import Run
from conductor_worker.log_format import TextFormatter
from tests.unit.test_context import EXECUTION, make


def test_ctx_logger_forwards_formatted_lines_with_the_attempt() -> None:
    ctx, link = make()
    logging.getLogger("conductor.task.unit-ctx").setLevel(logging.INFO)
    ctx.logger.info("row %d of %s", 3, "ten")
    ctx.logger.debug("not at this level")
    try:
        raise ValueError("bad row")
    except ValueError:
        ctx.logger.exception("failed on %r", "x")
    ctx.logger.warning("100% plain")  # no arguments: the text as it is
    assert link.logged[0] == (EXECUTION, 2, "INFO", "row 3 of ten")
    level, message = link.logged[1][2:]
    assert level == "ERROR" and message.startswith("failed on 'x'\nTraceback")
    assert message.rstrip().endswith("ValueError: bad row")
    assert link.logged[2][2:] == ("WARNING", "100% plain")
    assert len(link.logged) == 3


def test_a_run_forwards_a_bounded_number_of_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(context_module, "MAX_FORWARDED_LINES", 5)
    ctx, link = make()
    logging.getLogger("conductor.task.unit-ctx").setLevel(logging.INFO)
    for i in range(20):
        ctx.logger.info("line %d", i)
    assert [m for *_, m in link.logged] == [f"line {i}" for i in range(5)]
    ctx.logger.info("x" * 100_000)  # over the bound: not forwarded at all
    assert len(link.logged) == 5


def test_text_lines_of_a_run_name_its_execution_and_attempt() -> None:
    record = logging.LogRecord("conductor.task.t", logging.INFO, "f", 1, "hello %s", ("you",),
                               None)
    record.execution_id, record.attempt = "42", 3
    assert TextFormatter().format(record).endswith(
        "INFO conductor.task.t: [execution 42 attempt 3] hello you")
    lifecycle = logging.LogRecord("conductor_worker.executions", logging.INFO, "f", 1,
                                  "execution 42 attempt 3/3 (t): started", (), None)
    lifecycle.execution_id, lifecycle.attempt, lifecycle.event = "42", 3, "started"
    assert "[execution" not in TextFormatter().format(lifecycle)  # it names them itself


def _ack(state: str, run_in: float | None = None) -> worker_pb2.OutcomeAck:
    """An acknowledgement; `run_in`: seconds from now (built when the test runs)."""
    ack = worker_pb2.OutcomeAck(execution_id="7", lease_token="t", state=state,
                                status=worker_pb2.WRITE_STATUS_OK)
    if run_in is not None:
        ack.run_at.FromNanoseconds(int((time.time() + run_in) * 1e9))
    return ack


def _failed(message: str) -> worker_pb2.Outcome:
    return worker_pb2.Outcome(execution_id="7", lease_token="t", failed=worker_pb2.Failed(
        error=common_pb2.ErrorInfo(type="KeyError", message=message), retryable=True))


@pytest.mark.parametrize(
    ("outcome", "answer", "level", "text"),
    [
        (worker_pb2.Outcome(completed=worker_pb2.Completed(result_json="1")),
         ("succeeded", None), logging.INFO, r"succeeded in \d+\.\d\ds, 2 steps"),
        (_failed("'id'\nmore lines"), ("pending", 30), logging.WARNING,
         r"failed after \d+\.\d\ds, 2 steps: KeyError: 'id'; retry in (29|30)\.\ds"),
        (_failed("'id'"), ("failed", None), logging.ERROR,
         r"failed after .*: KeyError: 'id'; no retry left \(execution failed\)"),
        (worker_pb2.Outcome(released=worker_pb2.Released(
            reason=worker_pb2.RELEASE_REASON_WINDOW)), ("pending", 3600),
         logging.INFO, r"released \(the task's window closed\) after .*; no attempt counted;"
         r" runs again in 3\d\d\d\.\ds"),
        (worker_pb2.Outcome(released=worker_pb2.Released(
            reason=worker_pb2.RELEASE_REASON_SHUTDOWN)), ("pending", 0),
         logging.INFO, r"released \(the worker is shutting down\) after [\d.]+s, 2 steps;"
         r" no attempt counted"),
        (worker_pb2.Outcome(released=worker_pb2.Released(
            reason=worker_pb2.RELEASE_REASON_CANCELLED)), ("cancelled", None), logging.INFO,
         r"cancelled after .*"),
    ],
)
def test_lifecycle_line_of_each_outcome(caplog: pytest.LogCaptureFixture, outcome: Any,
                                        answer: Any, level: int, text: str) -> None:
    ack = _ack(*answer)
    run = Run("7", "orders", attempt=2, max_attempts=5, steps=2)
    with caplog.at_level(logging.DEBUG, logger="conductor_worker.executions"):
        run.log_outcome(outcome, ack)
    (record,) = caplog.records
    assert record.levelno == level
    prefix = "execution 7 attempt 2/5 (orders): "
    assert record.getMessage().startswith(prefix)
    assert re.fullmatch(text, record.getMessage()[len(prefix):]), record.getMessage()
    assert (record.execution_id, record.attempt, record.task) == ("7", 2, "orders")


def test_chatty_loggers_are_quiet_unless_debugging() -> None:
    try:
        configure("INFO", "text")
        assert all(logging.getLogger(n).level == logging.WARNING for n in CHATTY)
        configure("DEBUG", "text")
        assert all(logging.getLogger(n).level == logging.DEBUG for n in CHATTY)
    finally:
        configure("WARNING", "text")
