"""The fault suite's counting rules on made-up records (no processes, no database): each count
can fail."""

from __future__ import annotations

from typing import Any

from tests.faults import checks


def step(e: str, s: str, tok: str, n: str, t: float, a: int = 1) -> dict[str, Any]:
    return {"k": "step", "e": e, "s": s, "a": a, "tok": tok, "n": n, "pid": 1, "t": t}


def start(e: str, tok: str, t: float, a: int = 1) -> dict[str, Any]:
    return {"k": "start", "e": e, "a": a, "tok": tok, "pid": 1, "t": t}


def test_a_run_started_after_the_commit_is_a_rerun_after_recorded() -> None:
    counts = checks.Counts()
    runs = [step("1", "s1", "A", "x", 10.0), step("1", "s1", "B", "y", 10.5),
            step("1", "s1", "C", "z", 12.0)]
    checks._count_reruns(counts, runs, {("1", "s1"): ({"tok": "A", "n": "x"}, 11.0)})
    assert counts.rerun_after_recorded == 1  # C, after the commit at 11.0
    assert counts.rerun_unacked == 1  # B started before it


def test_runs_of_a_step_never_recorded_are_unacked_reruns() -> None:
    counts = checks.Counts()
    checks._count_reruns(counts, [step("1", "s2", "A", "x", 1.0), step("1", "s2", "B", "y", 2.0)],
                         {})
    assert (counts.rerun_after_recorded, counts.rerun_unacked) == (0, 1)


def test_superseded_needs_a_later_lease_started_before_the_write() -> None:
    leases = checks._leases([start("1", "A", 1.0, a=1), start("1", "B", 5.0, a=2)])
    assert checks.superseded(leases["1"], "A", 6.0)  # B started at 5.0
    assert not checks.superseded(leases["1"], "A", 4.0)  # before B existed
    assert not checks.superseded(leases["1"], "B", 9.0)  # the latest lease
    assert checks.superseded(leases["1"], "unknown", 1.0)


def test_a_late_run_of_an_older_attempt_does_not_supersede_the_newer_one() -> None:
    """A stalled worker starting attempt 1 after attempt 2 began: attempt 2 stays current."""
    leases = checks._leases([start("1", "B", 5.0, a=2), start("1", "A", 8.0, a=1)])
    assert not checks.superseded(leases["1"], "B", 9.0)
    assert checks.superseded(leases["1"], "A", 9.0)


def _stale(runs: list[dict[str, Any]], recorded: dict[tuple[str, str], tuple[Any, float]],
           executions: list[tuple[Any, ...]]) -> checks.Counts:
    counts = checks.Counts()
    checks._count_stale(counts, runs, recorded, checks._leases(runs), executions)
    return counts


def test_a_row_no_run_made_or_a_superseded_lease_made_is_stale() -> None:
    runs = [start("1", "A", 1.0), step("1", "s1", "A", "x", 1.1),
            start("1", "B", 5.0, a=2), step("1", "s1", "B", "y", 5.1)]
    assert _stale(runs, {("1", "s1"): ({"tok": "B", "n": "y"}, 5.2)}, []).stale_writes == 0
    assert _stale(runs, {("1", "s1"): ({"tok": "A", "n": "x"}, 6.0)}, []).stale_writes == 1
    assert _stale(runs, {("1", "s1"): ({"tok": "B", "n": "other"}, 5.2)}, []).stale_writes == 1


def test_a_result_that_disagrees_with_the_rows_is_stale() -> None:
    runs = [start("1", "A", 1.0), step("1", "s1", "A", "x", 1.1)]
    recorded = {("1", "s1"): ({"tok": "A", "n": "x"}, 1.2)}
    good = '{"tok": "A", "steps": {"s1": {"tok": "A", "n": "x"}}}'
    bad = '{"tok": "A", "steps": {"s1": {"tok": "A", "n": "elsewhere"}}}'
    row = ("1", "succeeded", 1, good, "w", None, None)
    assert _stale(runs, recorded, [row]).stale_writes == 0
    assert _stale(runs, recorded, [("1", "succeeded", 1, bad, "w", None, None)]).stale_writes == 1


def test_outcomes_count_lost_stuck_and_burned() -> None:
    counts = checks.Counts()
    executions = [("1", "succeeded", 1), ("2", "succeeded", 3), ("3", "failed", 3),
                  ("4", "running", 2), ("5", "pending", 1)]
    rows = [(*e, None, "w", None, None) for e in executions]
    checks._count_outcomes(counts, rows, ["1", "2", "3", "4", "5", "6"])
    assert counts.lost == 2  # 3 failed, 6 missing
    assert counts.stuck == 2
    assert counts.burned == 2 + 3 + 1
    assert counts.burned_twice == 2  # 2 and 3


def test_recovery_is_when_the_backlog_drained_for_good() -> None:
    spans = [(0.0, 0.5), (1.0, 9.0), (2.0, 2.5)]
    assert checks.recovery(spans, fault_end=3.0, latency=2.0) == 6.0
    assert checks.recovery([(0.0, 0.5)], fault_end=3.0, latency=2.0) == 0.0
    assert checks.recovery([(0.0, None)], fault_end=3.0, latency=2.0) is None
