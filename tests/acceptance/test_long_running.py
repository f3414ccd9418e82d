"""Checkpoints, graceful shutdown, time windows, sleep, cancellation and drain mode, on real
worker processes with the coordinator's clock moved by the tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from conductor_worker import Client
from tests.conftest import ROOT, wait_for

pytestmark = pytest.mark.acceptance

MODULE = "tests.acceptance.long_tasks"
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def tables(db: Any) -> Any:
    db.execute("CREATE TABLE effects (execution_id text, item text, at timestamptz DEFAULT now())")
    db.execute("CREATE TABLE old_data (id serial PRIMARY KEY, created_at timestamptz NOT NULL)")
    return db


def effects(db: Any, execution_id: str) -> list[str]:
    rows = db.execute(
        "SELECT item FROM effects WHERE execution_id = %s ORDER BY at, item", (execution_id,)
    )
    return [r[0] for r in rows]


def row(db: Any, execution_id: str) -> tuple[Any, ...]:
    return db.execute(
        "SELECT state::text, attempt, run_at, (SELECT count(*) FROM conductor_steps s"
        " WHERE s.execution_id = e.id) FROM conductor_executions e WHERE id = %s",
        (int(execution_id),),
    ).fetchone()


def settle(coordinator: Any) -> None:
    """Let the coordinator's lease loop run a full pass (deterministic 'nothing happened')."""
    coordinator.run(coordinator.coordinator.dispatcher.settle())


@pytest.fixture
def client(address: str) -> Any:
    with Client(address) as c:
        yield c


# -- the seed document's examples ------------------------------------------------------


def test_process_dataset_one_step_per_item(address, spawn_worker, client, tables, database_url):
    spawn_worker(address, MODULE)
    execution = client.wait(
        client.invoke("process-dataset", {"dsn": database_url, "count": 25}), timeout=60
    )
    assert execution.result == {"processed": 25}
    assert sorted(effects(tables, execution.id)) == sorted(f"item-{i}" for i in range(25))


def test_delete_old_data_checkpoint_loop(address, spawn_worker, client, tables, database_url):
    tables.execute(
        "INSERT INTO old_data (created_at) SELECT now() - g * interval '1 minute'"
        " FROM generate_series(1, 5500) g"
    )
    spawn_worker(address, MODULE)
    execution = client.wait(
        client.invoke("delete-old-data", {"dsn": database_url, "batch": 1000}), timeout=60
    )
    assert execution.result == {"completed": True}
    assert tables.execute("SELECT count(*) FROM old_data").fetchone()[0] == 0


def test_window_tasks_run_inside_their_windows(
    coordinator, clock, spawn_worker, client, tables, database_url, tmp_path
):
    clock.set(datetime(2026, 6, 10, 23, 0, tzinfo=BERLIN))  # inside 22-06 Berlin and 20-06 UTC
    spawn_worker(coordinator.coordinator.address, MODULE)
    out = tmp_path / "export.txt"
    heavy = client.invoke("heavy-processing", {"dsn": database_url, "count": 5})
    export = client.invoke("bulk-export", {"dsn": database_url, "records": 3500, "out": str(out)})
    assert client.wait(heavy, timeout=60).result == 5
    assert client.wait(export, timeout=60).result == 3500
    assert out.read_text().splitlines() == [str(i) for i in range(3500)]
    assert effects(tables, export) == [f"batch-{i}" for i in (0, 1000, 2000, 3000)]

    # business hours and the vacuum window are closed now: invocations wait
    tickets = client.invoke("process-support-tickets", {"dsn": database_url, "ticket_id": 7})
    vacuum = client.invoke("vacuum-database", {"dsn": database_url})
    settle(coordinator)
    assert row(tables, tickets)[:2] == ("pending", 0)
    assert row(tables, vacuum)[:2] == ("pending", 0)
    clock.set(datetime(2026, 6, 11, 2, 0, tzinfo=UTC))  # the vacuum window opens
    assert client.wait(vacuum, timeout=60).result == ["VACUUM old_data", "ANALYZE old_data"]
    assert row(tables, tickets)[0] == "pending"
    clock.set(datetime(2026, 6, 11, 9, 0, tzinfo=UTC))  # business hours
    assert client.wait(tickets, timeout=60).result == "notified"
    assert effects(tables, tickets) == ["notify-agent-7"]


# -- graceful shutdown -----------------------------------------------------------------


@pytest.mark.parametrize(("task_name", "runs"), [("process-dataset", 1),
                                                  ("process-dataset-async", 3)])
def test_sigterm_mid_loop_releases_and_a_new_worker_finishes_exactly_once(
    address, spawn_worker, client, tables, database_url, task_name, runs
):
    first = spawn_worker(address, MODULE)
    ids = client.invoke_batch(
        task_name, [{"dsn": database_url, "count": 40, "delay": 0.05}] * runs
    )
    for execution_id in ids:
        wait_for(lambda e=execution_id: len(effects(tables, e)) >= 5,
                 what="items to be processed")
    started = time.monotonic()
    first.process.send_signal(signal.SIGTERM)
    assert first.process.wait(30) == 0, first.output()
    took = time.monotonic() - started
    assert took < 10, f"worker took {took:.1f}s to stop after SIGTERM"
    for execution_id in ids:
        state, attempt, _, steps = row(tables, execution_id)
        assert (state, attempt) == ("pending", 0), "a release counts no attempt"
        assert steps >= 6  # fetch-items + processed items
        assert len(effects(tables, execution_id)) < 40

    spawn_worker(address, MODULE)
    for execution_id in ids:
        execution = client.wait(execution_id, timeout=60)
        assert execution.state == "succeeded" and execution.attempt == 1
        items = effects(tables, execution_id)
        assert sorted(items) == sorted(f"item-{i}" for i in range(40)), "each item exactly once"


@pytest.mark.parametrize("how", ["second-signal", "drain-timeout"])
def test_second_signal_or_drain_timeout_releases_at_once(
    address, spawn_worker, client, tables, database_url, tmp_path, how
):
    skip = tmp_path / "skip-long-step"
    extra = ("--drain-timeout", "1") if how == "drain-timeout" else ()
    first = spawn_worker(address, MODULE, *extra)
    execution_id = client.invoke(
        "stubborn-step", {"dsn": database_url, "seconds": 120, "skip": str(skip)}
    )
    wait_for(lambda: "long-started" in effects(tables, execution_id), what="the long step")
    first.process.send_signal(signal.SIGTERM)
    if how == "second-signal":
        with pytest.raises(subprocess.TimeoutExpired):
            first.process.wait(1.0)  # graceful: still waiting for the step to finish
        first.process.send_signal(signal.SIGTERM)
    assert first.process.wait(30) == 0, first.output()
    state, attempt, _, steps = row(tables, execution_id)
    assert (state, attempt, steps) == ("pending", 0, 1), "released with its first step"
    assert "long-finished" not in effects(tables, execution_id)

    skip.touch()
    spawn_worker(address, MODULE)
    execution = client.wait(execution_id, timeout=60)
    assert execution.state == "succeeded" and execution.attempt == 1
    assert effects(tables, execution_id).count("before") == 1


# -- time windows ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "close", "reopen_utc"),
    [
        # spring: clocks go 02:00 CET -> 03:00 CEST on 2026-03-29
        (datetime(2026, 3, 28, 23, 0, tzinfo=BERLIN), datetime(2026, 3, 29, 6, 0, tzinfo=BERLIN),
         datetime(2026, 3, 29, 20, 0, tzinfo=UTC)),
        # autumn: clocks go 03:00 CEST -> 02:00 CET on 2026-10-25
        (datetime(2026, 10, 24, 23, 0, tzinfo=BERLIN),
         datetime(2026, 10, 25, 6, 0, tzinfo=BERLIN), datetime(2026, 10, 25, 21, 0, tzinfo=UTC)),
    ],
    ids=["spring", "autumn"],
)
def test_window_closing_mid_run_releases_until_next_opening(
    coordinator, clock, spawn_worker, client, tables, database_url, start, close, reopen_utc
):
    clock.set(start)
    spawn_worker(coordinator.coordinator.address, MODULE)
    execution_id = client.invoke(
        "heavy-processing", {"dsn": database_url, "count": 400, "delay": 0.02}
    )
    wait_for(lambda: len(effects(tables, execution_id)) >= 3, what="the task to run")
    clock.set(close)
    wait_for(lambda: row(tables, execution_id)[0] == "pending", what="the release")
    _state, attempt, run_at, steps = row(tables, execution_id)
    errors = tables.execute("SELECT error FROM conductor_executions").fetchall()
    assert attempt == 0 and steps >= 4, f"not a clean release: {errors}"
    assert run_at == reopen_utc
    done = len(effects(tables, execution_id))
    assert done < 400

    clock.set(reopen_utc - timedelta(minutes=1))
    settle(coordinator)
    assert row(tables, execution_id)[0] == "pending", "leased before the window opened"
    clock.set(reopen_utc)
    execution = client.wait(execution_id, timeout=120)
    assert execution.state == "succeeded" and execution.result == 400
    assert sorted(effects(tables, execution_id)) == sorted(f"item-{i}" for i in range(400))


@pytest.mark.parametrize("task", ["window-gate", "window-gate-async"])
@pytest.mark.parametrize("how", ["clock-jump", "time-passes"])
def test_no_step_starts_after_its_window_closed(
    coordinator, clock, spawn_worker, client, tables, database_url, tmp_path, task, how
):
    """The run knows when its window closes (from its lease, and from the coordinator's
    clock when a test moves it): a step that would start after the close releases instead,
    however late the coordinator's own release request arrives."""
    close = datetime(2026, 6, 10, 17, 0, tzinfo=UTC)
    spawn_worker(coordinator.coordinator.address, MODULE)
    clock.set(close - timedelta(hours=1))
    gate = tmp_path / "gate"
    execution_id = client.invoke(task, {"dsn": database_url, "gate": str(gate)})
    wait_for(lambda: effects(tables, execution_id) == ["before"], what="the first step")
    if how == "clock-jump":
        clock.set(close + timedelta(milliseconds=1))  # returns once the workers use it
    else:  # the run is told the time 2 s before the close, and then sees the close come
        clock.set(close - timedelta(seconds=2))
        wait_for(lambda: clock.now() >= close, what="the window to close")
    gate.touch()
    wait_for(lambda: row(tables, execution_id)[0] == "pending", what="the release")
    _state, attempt, run_at, steps = row(tables, execution_id)
    assert (attempt, steps) == (0, 1)
    assert run_at == datetime(2026, 6, 11, 9, 0, tzinfo=UTC)
    assert effects(tables, execution_id) == ["before"], "a step started after the close"


def test_invocation_outside_window_waits_for_opening(coordinator, clock, spawn_worker, client,
                                                     tables, database_url):
    clock.set(datetime(2026, 1, 15, 12, 0, tzinfo=BERLIN))
    spawn_worker(coordinator.coordinator.address, MODULE)
    execution_id = client.invoke("heavy-processing", {"dsn": database_url, "count": 2})
    settle(coordinator)
    assert row(tables, execution_id)[:2] == ("pending", 0)
    clock.set(datetime(2026, 1, 15, 22, 0, tzinfo=BERLIN))
    assert client.wait(execution_id, timeout=60).result == 2


# -- sleep, cancellation, drain --------------------------------------------------------


@pytest.mark.parametrize("task", ["napper", "async-napper"])
def test_sleep_releases_and_resumes_after_the_delay(coordinator, clock, spawn_worker, client,
                                                    tables, database_url, task):
    spawn_worker(coordinator.coordinator.address, MODULE)
    before = clock.now()
    execution_id = client.invoke(task, {"dsn": database_url, "seconds": 3600})
    wait_for(lambda: row(tables, execution_id)[0] == "pending"
             and row(tables, execution_id)[3] >= 2, what="the sleep to release")
    _state, attempt, run_at, _ = row(tables, execution_id)
    assert attempt == 0
    assert before + timedelta(seconds=3599) < run_at < clock.now() + timedelta(seconds=3601)
    settle(coordinator)
    assert row(tables, execution_id)[0] == "pending"
    clock.advance(timedelta(seconds=3601))
    execution = client.wait(execution_id, timeout=60)
    assert execution.result == "rested" and execution.attempt == 1
    assert effects(tables, execution_id) == ["before-nap", "after-nap"]


def test_cancel_running_execution_stops_at_next_checkpoint(address, spawn_worker, client,
                                                           tables, database_url):
    spawn_worker(address, MODULE)
    execution_id = client.invoke(
        "process-dataset", {"dsn": database_url, "count": 500, "delay": 0.02}
    )
    wait_for(lambda: len(effects(tables, execution_id)) >= 3, what="the task to run")
    assert client.cancel(execution_id).cancel_requested
    execution = client.wait(execution_id, timeout=30)
    assert execution.state == "cancelled"
    assert len(effects(tables, execution_id)) < 500
    # the CLI reports an already-finished execution clearly
    out = subprocess.run(
        [sys.executable, "-m", "conductor_worker", "cancel", execution_id, "--server", address],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert out.returncode == 1 and "already cancelled" in out.stderr


def test_drain_mode_runs_what_is_runnable_and_exits(address, client, tables, database_url):
    def drain() -> None:
        out = subprocess.run(
            [sys.executable, "-m", "conductor_worker", "worker", MODULE, "--server", address,
             "--drain"],
            cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        )
        assert out.returncode == 0, out.stderr

    drain()  # nothing to do yet: registers the tasks and exits
    ids = [client.invoke("process-dataset", {"dsn": database_url, "count": 3}) for _ in range(5)]
    later = client.invoke("process-dataset", {"dsn": database_url, "count": 1}, delay=3600)
    drain()
    assert [client.get(i).state for i in ids] == ["succeeded"] * 5
    assert client.get(later).state == "pending"


def test_worker_drain_in_python(address, client):
    from conductor_worker import Worker
    from tests.acceptance import tasks

    assert Worker(tasks, address).drain() == 0  # registers the tasks
    ids = client.invoke_batch("noop", [1, 2, 3])
    assert Worker(tasks, address).drain() == 0
    assert [client.get(i).result for i in ids] == [1, 2, 3]


def test_sigterm_to_exit_time_with_10ms_checkpoints(address, spawn_worker, client, tables,
                                                    database_url):
    worker = spawn_worker(address, MODULE)
    execution_id = client.invoke("checkpoint-loop", {"dsn": database_url, "interval": 0.01})
    wait_for(lambda: effects(tables, execution_id) == ["started"], what="the loop to start")
    started = time.monotonic()
    os.kill(worker.pid, signal.SIGTERM)
    assert worker.process.wait(30) == 0
    took = time.monotonic() - started
    assert row(tables, execution_id)[:2] == ("pending", 0)
    print(f"SIGTERM to exit: {took * 1000:.0f} ms")
    assert took < 10
