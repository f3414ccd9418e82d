"""conductor_worker.window: the adaptive lease window of a task without `prefetch`."""

from __future__ import annotations

from conductor_worker.window import MAX_PREFETCH, LeaseWindow


def test_short_runs_open_the_window_and_long_runs_close_it() -> None:
    window = LeaseWindow(slots=2, now=0.0)
    assert window.current == 4  # twice the slots until measured
    assert window.completed(1, now=0.01) is None  # too soon to measure
    # 2,020 runs/s: 100 ms of work ahead is 202 more leases
    assert window.completed(100, now=0.05) == 204
    # a no-op's rate: the window opens up to its ceiling
    assert window.completed(5000, now=0.10) == 2 + MAX_PREFETCH
    # then two-second runs: the window shrinks back to one lease per slot (not hoarded)
    t, sizes = 0.10, []
    for _ in range(40):
        t += 1.0
        if (size := window.completed(1, now=t)) is not None:
            sizes.append(size)
    assert sizes and sizes == sorted(sizes, reverse=True)
    assert window.current == 2


def test_runs_under_a_second_keep_one_spare_lease() -> None:
    """Half-second runs on 2 slots (4 a second): 100 ms of work is less than one run, but
    one spare lease lets a slot start its next run without a round trip."""
    window = LeaseWindow(slots=2, now=0.0)
    t = 0.0
    for _ in range(40):
        t += 0.25
        window.completed(1, now=t)
    assert window.current == 3


def test_small_moves_are_not_reported() -> None:
    window = LeaseWindow(slots=4, now=0.0)
    assert window.completed(300, now=0.1) == 4 + 300  # 3,000 runs/s
    assert window.completed(310, now=0.2) is None  # 3,100 runs/s: within a quarter
