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


def test_queued_runs_start_by_priority_then_in_arrival_order() -> None:
    """A pool with no process free keeps runs queued: a higher priority goes before lower
    ones (and is reported as waiting), equal priorities keep their order."""
    from conductor_worker.context import RunSpec
    from conductor_worker.pool import Pool
    from tests.unit.sample_tasks import plain

    pool = Pool(plain, 1, lambda message: None)  # not started: no process takes anything

    def spec(name: str, priority: int) -> RunSpec:
        return RunSpec(name, "token", "unit-sample-plain", 1, 3, "null", {}, priority=priority)

    handed = [pool.submit(spec(n, p)) for n, p in
              [("a", 0), ("b", 0), ("c", 5), ("d", 1), ("e", 5), ("f", 0)]]
    assert handed == [False] * 6
    assert [s.execution_id for s in pool.pending] == ["c", "e", "d", "a", "b", "f"]
