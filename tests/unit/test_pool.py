"""conductor_worker.pool.describe_exit: how a dead pool child is reported."""

from __future__ import annotations

import pytest

from conductor_worker.pool import describe_exit


def test_killed_by_sigkill() -> None:
    text = describe_exit(-9)
    assert "SIGKILL" in text
    assert "9" in text
    assert text == "killed by signal SIGKILL (9)"


def test_killed_by_sigsegv() -> None:
    assert describe_exit(-11) == "killed by signal SIGSEGV (11)"


def test_unknown_signal_still_reports_number() -> None:
    text = describe_exit(-250)
    assert "250" in text
    assert text.startswith("killed by signal")


@pytest.mark.parametrize("code", [0, 1, 3, 137])
def test_exit_code(code: int) -> None:
    assert describe_exit(code) == f"exited with code {code}"


def test_none_means_the_process_disappeared() -> None:
    text = describe_exit(None)
    assert isinstance(text, str)
    assert text
    assert "code" not in text
    assert "signal" not in text
