"""conductor_worker.pool.Pool's lifecycle without processes: which idle children stop, and
when (a fake clock; children are stand-ins that record what they are sent)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from conductor_worker import pool as pool_module
from conductor_worker.pool import Pool, _Child
from conductor_worker.settings import PoolSettings
from tests.unit import sample_tasks


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeProcess:
    pid = None
    exitcode = None


def make(monkeypatch: pytest.MonkeyPatch, min_processes: int = 0) -> tuple[Pool, Clock]:
    clock = Clock()
    monkeypatch.setattr(pool_module.time, "monotonic", clock)
    pool = Pool([sample_tasks.plain], lambda message: None,
                settings=PoolSettings(idle_timeout=10.0))
    pool.min_processes = min_processes
    pool._loop = asyncio.new_event_loop()
    return pool, clock


def child(pool: Pool, idle_since: float | None) -> tuple[_Child, list[Any]]:
    """A stand-in child, idle since then (None: busy with one run)."""
    sent: list[Any] = []
    c = _Child(FakeProcess(), None)  # type: ignore[arg-type]
    c.send = sent.append  # type: ignore[method-assign]
    if idle_since is None:
        c.inflight.append(object())  # type: ignore[arg-type]
    else:
        c.idle_since = idle_since
    pool.children.append(c)
    return c, sent


def test_children_idle_past_the_timeout_stop_down_to_the_minimum(monkeypatch) -> None:
    pool, clock = make(monkeypatch, min_processes=1)
    oldest, oldest_sent = child(pool, 1000.0)
    newer, newer_sent = child(pool, 1005.0)
    busy, busy_sent = child(pool, None)
    clock.now = 1012.0  # oldest idle 12 s, newer 7 s
    pool._reap()
    assert oldest.retiring and oldest_sent == [("stop",)]
    assert not newer.retiring and not busy.retiring
    clock.now = 1016.0  # newer idle 11 s: 2 live, min 1, so it stops; busy never does
    pool._reap()
    assert newer.retiring and newer_sent == [("stop",)]
    assert pool.live() == [busy] and busy_sent == []
    clock.now = 1100.0  # the last one is the minimum, even once idle
    busy.inflight.clear()
    busy.idle_since = 1017.0
    pool._reap()
    assert pool.live() == [busy] and busy_sent == []
    pool._loop.close()  # type: ignore[union-attr]


def test_the_idle_timer_is_armed_for_the_longest_idle_child(monkeypatch) -> None:
    pool, clock = make(monkeypatch)
    child(pool, 1000.0)
    child(pool, 1004.0)
    clock.now = 1003.0
    pool._schedule_reap()
    handle = pool._reap_handle
    assert handle is not None
    loop = pool._loop
    assert loop is not None
    assert handle.when() - loop.time() == pytest.approx(7.0, abs=0.5)
    pool._schedule_reap()  # armed once
    assert pool._reap_handle is handle
    handle.cancel()
    loop.close()


def test_no_timer_when_idle_processes_are_kept(monkeypatch) -> None:
    pool, _ = make(monkeypatch)
    pool.idle_timeout = 0  # --pool-idle-timeout 0: keep every started process
    child(pool, 1000.0)
    pool._schedule_reap()
    assert pool._reap_handle is None
    pool.idle_timeout = 10.0
    pool.min_processes = 1  # the one child is the warm minimum
    pool._schedule_reap()
    assert pool._reap_handle is None
    pool._loop.close()  # type: ignore[union-attr]
