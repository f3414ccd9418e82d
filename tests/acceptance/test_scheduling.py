"""Cron (static and dynamic), missed fires, DST, dedupe, priority and run_at, driven by the
coordinator's clock."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import pytest

from conductor.v1 import client_pb2, client_pb2_grpc
from conductor_worker import Client, InvalidArgument, ScheduleNotFound, TaskNotFound
from tests.conftest import ROOT, wait_for
from tests.integration.raw_worker import RawWorker, definition

pytestmark = pytest.mark.acceptance
BERLIN = ZoneInfo("Europe/Berlin")
MINUTE = timedelta(minutes=1)


def fires(db: Any, schedule: str) -> list[datetime]:
    rows = db.execute(
        "SELECT fire_time FROM conductor_executions WHERE schedule = %s ORDER BY fire_time",
        (schedule,),
    )
    return [r[0] for r in rows]


def register(address: str, *names: str) -> None:
    """Register tasks with a short-lived raw worker stream (no worker keeps running)."""
    worker = RawWorker(address, *(definition(n, capacity=1) for n in names))
    worker.close()


def settle_scheduler(coordinator: Any) -> None:
    coordinator.run(coordinator.coordinator.scheduler.settle())


@pytest.mark.parametrize("frozen_clock", [True], indirect=True)
def test_two_coordinators_fire_each_minute_exactly_once(start_coordinator, clock, db):
    clock.set(datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC))
    first, second = start_coordinator(), start_coordinator()
    register(first.coordinator.address, "minutely")
    with Client(second.coordinator.address) as client:
        client.schedule("minutely", "every-minute", "* * * * *")
    count = lambda: db.execute(  # noqa: E731
        "SELECT count(*) FROM conductor_executions WHERE schedule = 'every-minute'"
    ).fetchone()[0]
    for i in range(1000):
        clock.advance(MINUTE)
        wait_for(lambda i=i: count() >= i + 1, timeout=30, what=f"fire {i + 1}")
    for coordinator in (first, second):
        settle_scheduler(coordinator)
    times = fires(db, "every-minute")
    start = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    assert times == [start + i * MINUTE for i in range(1000)], "gaps or duplicates"


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        # spring forward 2026-03-29: 02:30 does not exist -> 03:00 CEST (01:00 UTC), once
        (datetime(2026, 3, 28, 12, tzinfo=UTC),
         {"0230": [datetime(2026, 3, 28, 1, 30, tzinfo=UTC),
                   datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
                   datetime(2026, 3, 30, 0, 30, tzinfo=UTC)],
          "0300": [datetime(2026, 3, 28, 2, 0, tzinfo=UTC),
                   datetime(2026, 3, 29, 1, 0, tzinfo=UTC),
                   datetime(2026, 3, 30, 1, 0, tzinfo=UTC)]}),
        # fall back 2026-10-25: 02:30 happens twice -> fires once, at 02:30 CEST (00:30 UTC)
        (datetime(2026, 10, 24, 12, tzinfo=UTC),
         {"0230": [datetime(2026, 10, 24, 0, 30, tzinfo=UTC),
                   datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
                   datetime(2026, 10, 26, 1, 30, tzinfo=UTC)],
          "0300": [datetime(2026, 10, 24, 1, 0, tzinfo=UTC),
                   datetime(2026, 10, 25, 2, 0, tzinfo=UTC),
                   datetime(2026, 10, 26, 2, 0, tzinfo=UTC)]}),
    ],
    ids=["spring", "autumn"],
)
def test_berlin_daily_schedules_across_dst_changes(coordinator, clock, db, day, expected):
    clock.set(day - timedelta(days=1))
    address = coordinator.coordinator.address
    register(address, "daily")
    with Client(address) as client:
        client.schedule("daily", "0230", "30 2 * * *", timezone="Europe/Berlin")
        client.schedule("daily", "0300", "0 3 * * *", timezone="Europe/Berlin")
    for _ in range(3 * 24 * 4):  # three days, a quarter of an hour at a time
        clock.advance(timedelta(minutes=15))
        settle_scheduler(coordinator)
    assert fires(db, "0230") == expected["0230"]
    assert fires(db, "0300") == expected["0300"]


@pytest.mark.parametrize("frozen_clock", [True], indirect=True)
def test_missed_fires_follow_each_schedules_policy(start_coordinator, clock, db):
    clock.set(datetime(2026, 2, 1, 0, 0, 30, tzinfo=UTC))
    first = start_coordinator()
    register(first.coordinator.address, "catch-up")
    with Client(first.coordinator.address) as client:
        client.schedule("catch-up", "latest", "* * * * *")
        client.schedule("catch-up", "skip", "* * * * *", missed="skip")
        client.schedule("catch-up", "all-5", "* * * * *", missed="all", missed_limit=5)
        client.schedule("catch-up", "all-20", "* * * * *", missed="all", missed_limit=20)
    first.stop()
    clock.advance(timedelta(minutes=10))  # down for ten fire times (00:01 .. 00:10)
    second = start_coordinator()
    settle_scheduler(second)
    minute = lambda m: datetime(2026, 2, 1, 0, m, tzinfo=UTC)  # noqa: E731
    assert fires(db, "latest") == [minute(10)]
    assert fires(db, "skip") == []
    assert fires(db, "all-5") == [minute(m) for m in range(6, 11)]
    assert fires(db, "all-20") == [minute(m) for m in range(1, 11)]
    clock.set(minute(11))  # back to normal: each fires on time
    settle_scheduler(second)
    for name in ("latest", "skip", "all-5", "all-20"):
        assert fires(db, name)[-1] == minute(11), name


def test_static_cron_and_event_schedule(coordinator, clock, spawn_worker, db):
    clock.set(datetime(2026, 5, 5, 10, 0, 30, tzinfo=UTC))
    address = coordinator.coordinator.address
    spawn_worker(address, "tests.acceptance.cron_tasks")
    with Client(address) as client:
        static = {(s.name, s.cron, s.static) for s in client.schedules("cron-static")}
        assert static == {("every-minute", "* * * * *", True), ("nightly", "0 2 * * *", True)}
        clock.advance(MINUTE)
        execution_id = wait_for(lambda: client.list("cron-static"), what="a fire")[0].id
        execution = client.wait(execution_id, timeout=60)
        assert execution.result == {"schedule": "every-minute",
                                    "fire_time": "2026-05-05T10:01:00+00:00"}
        assert execution.schedule == "every-minute"
        manual = client.wait(client.invoke("cron-static"), timeout=60)
        assert manual.result == {"schedule": None, "fire_time": None}


def test_cron_fire_outside_window_waits_for_it(coordinator, clock, spawn_worker, db):
    clock.set(datetime(2026, 5, 5, 1, 0, tzinfo=UTC))
    address = coordinator.coordinator.address
    spawn_worker(address, "tests.acceptance.cron_tasks")
    clock.set(datetime(2026, 5, 5, 1, 30, 1, tzinfo=UTC))  # fires at 01:30, window 02-04
    wait_for(lambda: fires(db, "30 1 * * *"), what="the fire")
    coordinator.run(coordinator.coordinator.dispatcher.settle())
    with Client(address) as client:
        (execution,) = client.list("windowed-cron")
        assert execution.state == "pending"
        clock.set(datetime(2026, 5, 5, 2, 0, tzinfo=UTC))
        done = client.wait(execution.id, timeout=60)
    assert done.result == "ran for 2026-05-05T01:30:00+00:00"


def test_dynamic_schedule_from_inside_a_task(address, spawn_worker):
    spawn_worker(address)
    with Client(address) as client:
        created = client.wait(client.invoke(
            "manage-schedule", {"action": "create", "cron": "0 9 * * *"}), timeout=60)
        assert created.state == "succeeded", created.error
        (schedule,) = client.schedules("noop")
        assert (schedule.name, schedule.cron, schedule.payload) == (
            "dynamic", "0 9 * * *", {"set_by": "create"})
        assert schedule.timezone == "Europe/Berlin" and not schedule.static
        client.wait(client.invoke(
            "manage-schedule", {"action": "replace", "cron": "*/5 * * * *"}), timeout=60)
        (schedule,) = client.schedules("noop")
        assert (schedule.cron, schedule.payload) == ("*/5 * * * *", {"set_by": "replace"})
        deleted = client.wait(client.invoke("manage-schedule", {"action": "delete"}), timeout=60)
        assert deleted.result == 0
        assert client.schedules("noop") == []


def test_deleting_a_schedule_cancels_its_pending_fire(coordinator, clock, db):
    clock.set(datetime(2026, 5, 5, 10, 0, 30, tzinfo=UTC))
    address = coordinator.coordinator.address
    register(address, "dropped")
    with Client(address) as client:
        client.schedule("dropped", "soon", "* * * * *")
        clock.advance(MINUTE)
        execution_id = wait_for(lambda: client.list("dropped"), what="the fire")[0].id
        assert client.unschedule("dropped", "soon") == 1
        assert client.get(execution_id).state == "cancelled"
        with pytest.raises(ScheduleNotFound):
            client.unschedule("dropped", "soon", missing_ok=False)


def test_concurrent_invokes_with_one_dedupe_key_create_one_execution(address, db):
    register(address, "deduped")
    ids: list[str] = []
    with Client(address) as client:
        barrier = threading.Barrier(100)

        def invoke(i: int) -> None:
            barrier.wait()
            ids.append(client.invoke("deduped", {"i": i}, dedupe_key="same-key"))

        threads = [threading.Thread(target=invoke, args=(i,)) for i in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert len(ids) == 100 and len(set(ids)) == 1
    assert db.execute("SELECT count(*) FROM conductor_executions").fetchone()[0] == 1


def test_priority_order_and_run_at_with_one_process(coordinator, clock, spawn_worker, tmp_path):
    address = coordinator.coordinator.address
    register(address, "ordered")
    effects = tmp_path / "order.txt"
    with Client(address) as client:
        later = client.invoke("ordered", {"effects": str(effects), "label": "later"},
                              priority=100, run_at=clock.now() + timedelta(hours=1))
        for label, priority in [("a", 0), ("b", 5), ("c", 0), ("d", 5), ("e", 10)]:
            client.invoke("ordered", {"effects": str(effects), "label": label},
                          priority=priority)
        spawn_worker(address)
        wait_for(lambda: effects.exists() and len(effects.read_text().split()) == 5,
                 what="five executions")
        assert effects.read_text().split() == ["e", "b", "d", "a", "c"]
        coordinator.run(coordinator.coordinator.dispatcher.settle())
        assert client.get(later).state == "pending"
        clock.advance(timedelta(hours=1))
        assert client.wait(later, timeout=60).result == "later"
    assert effects.read_text().split()[-1] == "later"


def test_bad_schedule_input_is_refused_and_nothing_written(address, db):
    register(address, "known")
    with Client(address) as client:
        cases = [
            ({"cron": "61 * * * *"}, "schedule.cron"),
            ({"cron": "* * * *"}, "schedule.cron"),
            ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "schedule.timezone"),
        ]
        for options, field in cases:
            with pytest.raises(InvalidArgument, match=field):
                client.schedule("known", "bad", options.pop("cron"), **options)
        with pytest.raises(TaskNotFound):
            client.schedule("unknown-task", "x", "* * * * *")
    with grpc.insecure_channel(address) as channel:
        stub = client_pb2_grpc.ConductorServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.PutSchedule(client_pb2.PutScheduleRequest(schedule=client_pb2.Schedule(
                task="known", name="x", cron="* * * * *", payload_json="{bad")), timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details().startswith("schedule.payload_json")
    assert db.execute("SELECT count(*) FROM conductor_schedules").fetchone()[0] == 0
    out = subprocess.run(
        [sys.executable, "-m", "conductor_worker", "invoke", "known", "--run-at", "tomorrow",
         "--server", address],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert out.returncode == 2 and "--run-at: 'tomorrow' is not an ISO 8601 time" in out.stderr
    assert db.execute("SELECT count(*) FROM conductor_executions").fetchone()[0] == 0


def test_schedule_cli(address, db):
    register(address, "known")
    cli = [sys.executable, "-m", "conductor_worker"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args, "--server", address], cwd=ROOT,
                              capture_output=True, text=True, timeout=60, check=False)

    added = run("schedule", "add", "known", "nightly", "--cron", "0 2 * * *",
                "--timezone", "Europe/Berlin", "--payload", '{"x": 1}')
    assert added.returncode == 0, added.stderr
    listed = run("schedule", "ls", "known")
    assert "nightly" in listed.stdout and "Europe/Berlin" in listed.stdout
    removed = run("schedule", "rm", "known", "nightly")
    assert removed.returncode == 0 and "deleted schedule known/nightly" in removed.stdout
    again = run("schedule", "rm", "known", "nightly")
    assert again.returncode == 1 and "no schedule named 'nightly'" in again.stderr
    bad = run("schedule", "add", "known", "x", "--cron", "nope")
    assert bad.returncode == 1 and "schedule.cron" in bad.stderr
