"""A wait's outcome that would take the waiting execution's steps past --max-steps-bytes
(children's results, an event's or a signal's payload) is recorded as ResultTooLarge at that
call, and the run goes on: leasable, retried per its policy, no child created twice. And a
child whose parent retention deleted still reads and shows (docs/workflows.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conductor_worker import Client, ExecutionNotFound
from tests.conftest import ROOT, wait_for

pytestmark = pytest.mark.acceptance

TASKS = "tests.acceptance.wait_limit_tasks"
LIMIT = 100_000


def _step(db: Any, execution_id: str, name: str) -> Any:
    row = db.execute("SELECT result FROM conductor_steps WHERE execution_id = %s AND name = %s",
                     (int(execution_id), name)).fetchone()
    assert row is not None, f"no step {name!r}"
    return row[0]


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_fan_in_over_the_steps_limit_fails_that_call_and_the_parent_goes_on(
    start_coordinator, spawn_worker, db, tmp_path
):
    node = start_coordinator(max_steps_bytes=LIMIT)
    spawn_worker(node.coordinator.address, TASKS)
    effects = tmp_path / "effects"
    with Client(node.coordinator.address) as client:
        parent = client.invoke("wl-fan", {"n": 20, "size": 10_000, "catch": True,
                                          "effects": str(effects)})
        done = client.wait(parent, timeout=120)
        assert done.state == "succeeded", done
        caught = done.result["caught"]
        assert (caught["step"], caught["steps_bytes"], caught["limit"]) == ("fan", 0, LIMIT)
        assert caught["size"] > 20 * 10_000
        assert caught["message"] == (
            f"step 'fan': the wait's outcome is {caught['size']} bytes; with the 0 bytes of the"
            f" execution's other steps it would pass the limit of {LIMIT} bytes"
            " (--max-steps-bytes)")
        assert done.result["after"] == "small"  # a step after the error is recorded
        # started, released to wait, resumed with the error; the first attempt then failed
        # (retryable): the second was leased with the recorded error and created no child
        assert done.attempt == 2 and _lines(effects) == ["start-1", "start-1", "start-2"]
        children = client.list(parent_id=parent, limit=None)
        assert len(children) == 20
        assert all(c.state == "succeeded" and len(c.result) == 10_000 for c in children)
        recorded = _step(db, parent, "fan")
        assert recorded == {"timeout": False, "too_large": {
            "bytes": caught["size"], "steps_bytes": 0, "limit": LIMIT}}


def test_a_timed_out_fan_in_over_the_limit_fails_the_wait_and_cancels_the_rest(
    start_coordinator, spawn_worker, clock, db
):
    node = start_coordinator(max_steps_bytes=LIMIT)
    spawn_worker(node.coordinator.address, TASKS)
    with Client(node.coordinator.address) as client:
        parent = client.invoke("wl-fan-timeout")
        wait_for(lambda: client.get(parent).waiting_for == "children:fan", what="the wait")
        children = client.list(parent_id=parent, limit=None)
        slow = next(c for c in children if c.payload.get("slow"))
        wait_for(lambda: sum(client.get(c.id).state == "succeeded" for c in children) == 15,
                 timeout=60, what="the fast children")
        wait_for(lambda: client.get(slow.id).state == "running", what="the slow child")
        clock.advance(timedelta(seconds=31))
        done = client.wait(parent, timeout=60)
        assert done.state == "succeeded", done
        assert done.result["caught"]["step"] == "fan"
        assert done.result["caught"]["size"] > 15 * 10_000
        assert _step(db, parent, "fan")["timeout"] is True
        assert client.wait(slow.id, timeout=60).state == "cancelled"


def test_an_uncaught_too_large_child_result_fails_the_parent_for_good(
    start_coordinator, spawn_worker
):
    node = start_coordinator(max_steps_bytes=LIMIT)
    spawn_worker(node.coordinator.address, TASKS)
    with Client(node.coordinator.address) as client:
        done = client.wait(client.invoke("wl-invoke", {"size": 150_000}), timeout=120)
        assert done.state == "failed" and done.attempt == 1, done
        assert done.error is not None and done.error.type == "ResultTooLarge"
        assert done.error.message.startswith("step 'one': the wait's outcome is ")
        assert f"the limit of {LIMIT} bytes" in done.error.message


def test_fan_in_past_what_a_lease_can_carry_is_not_a_lease_failure(
    coordinator, address, spawn_worker, tmp_path
):
    """60 children of 1 MB each (default limits): their outcome was recorded whole before,
    and the parent then failed at lease time with LeaseTooLarge."""
    spawn_worker(address, TASKS)
    effects = tmp_path / "effects"
    with Client(address) as client:
        parent = client.invoke("wl-fan", {"n": 60, "size": 1_000_000,
                                          "effects": str(effects)})
        done = client.wait(parent, timeout=180)
        assert done.state == "failed", done
        assert done.error is not None and done.error.type == "ResultTooLarge", done.error
        assert "the limit of 16777216 bytes" in done.error.message
        assert _lines(effects) == ["start-1", "start-1"]  # resumed after the wait, not failed
        # at lease time
        assert len(client.list(parent_id=parent, limit=None)) == 60


def test_an_event_payload_over_the_steps_limit_fails_the_wait(
    start_coordinator, spawn_worker, db
):
    node = start_coordinator(max_steps_bytes=LIMIT)
    spawn_worker(node.coordinator.address, TASKS)
    with Client(node.coordinator.address) as client:
        run = client.invoke("wl-event", {"pad": 60_000})
        wait_for(lambda: client.get(run).waiting_for == "event:ev", what="the wait")
        client.emit("wl.big", "e" * 50_000)  # under the payload limit, over the steps left
        done = client.wait(run, timeout=60)
        assert done.state == "succeeded", done
        caught = done.result["caught"]
        assert caught["step"] == "ev" and caught["limit"] == LIMIT
        assert caught["steps_bytes"] == len(json.dumps("p" * 60_000))
        assert caught["size"] > 50_000
        assert _step(db, run, "ev")["too_large"]["bytes"] == caught["size"]


def test_a_transactional_emit_past_the_limit_fails_the_wait(
    start_coordinator, spawn_worker, database_url
):
    """conductor_emit in an application's own transaction (no coordinator, no payload limit
    in between) applies the limit the coordinator wrote."""
    node = start_coordinator(max_steps_bytes=LIMIT)
    spawn_worker(node.coordinator.address, TASKS)
    with Client(node.coordinator.address) as client:
        run = client.invoke("wl-event", {"pad": 10})
        wait_for(lambda: client.get(run).waiting_for == "event:ev", what="the wait")
        with psycopg.connect(database_url) as conn, conn.transaction():
            conn.execute("SELECT conductor_emit('wl.big', %s::jsonb)",
                         (json.dumps("t" * 2_000_000),))
        done = client.wait(run, timeout=60)
        assert done.state == "succeeded", done
        assert done.result["caught"]["limit"] == LIMIT
        assert done.result["caught"]["size"] > 2_000_000


def test_a_signal_sent_before_the_wait_over_the_steps_limit_fails_the_wait(
    start_coordinator, spawn_worker
):
    node = start_coordinator(max_steps_bytes=LIMIT)
    spawn_worker(node.coordinator.address, TASKS).stop()  # registered, then gone
    with Client(node.coordinator.address) as client:
        run = client.invoke("wl-signal", {"pad": 60_000})
        client.signal(run, "big", "s" * 50_000)  # kept, delivered when the wait opens
        spawn_worker(node.coordinator.address, TASKS)
        done = client.wait(run, timeout=60)
        assert done.state == "succeeded", done
        caught = done.result["caught"]
        assert caught["step"] == "signal:big" and caught["limit"] == LIMIT
        assert caught["size"] + caught["steps_bytes"] > LIMIT


def test_a_wait_over_at_once_counts_toward_the_steps_limit(start_coordinator, spawn_worker):
    node = start_coordinator(max_steps_bytes=LIMIT)
    spawn_worker(node.coordinator.address, TASKS).stop()
    with Client(node.coordinator.address) as client:
        run = client.invoke("wl-signal-then-step", {"more": 50_000})
        client.signal(run, "early", "s" * 60_000)  # fits; answered when the wait opens
        spawn_worker(node.coordinator.address, TASKS)
        done = client.wait(run, timeout=60)
        assert done.state == "succeeded", done
        assert done.result["signal"] == 60_000
        refused = done.result["refused"]
        assert refused is not None and refused.startswith("step 'more' was not recorded:")
        assert f"the limit is {LIMIT} bytes" in refused


def test_outcomes_within_the_limit_are_delivered_whole(start_coordinator, spawn_worker,
                                                       tmp_path):
    node = start_coordinator(max_steps_bytes=LIMIT)
    spawn_worker(node.coordinator.address, TASKS)
    with Client(node.coordinator.address) as client:
        parent = client.invoke("wl-fan", {"n": 5, "size": 10_000,
                                          "effects": str(tmp_path / "effects")})
        done = client.wait(parent, timeout=60)
        assert done.state == "succeeded", done
        assert done.result == {"count": 5, "sizes": [10_000]}


def test_a_child_whose_parent_retention_deleted_reads_and_shows(
    start_coordinator, spawn_worker, clock
):
    node = start_coordinator(maintenance_interval=3600)
    address = node.coordinator.address
    spawn_worker(address, TASKS)
    with Client(address) as client:
        parent = client.wait(client.invoke("wl-short-lived", 7), timeout=60)
        assert parent.state == "succeeded", parent
        (child,) = client.list(parent_id=parent.id)
        clock.advance(timedelta(minutes=61))  # past the parent's retention, not the child's
        maintenance = node.coordinator.maintenance
        wait_for(lambda: node.run(maintenance.run_once()), what="a maintenance pass")
        with pytest.raises(ExecutionNotFound):
            client.get(parent.id)
        kept = client.get(child.id)
        assert kept.state == "succeeded" and kept.result == {"child of": 7}
        assert kept.parent_id == parent.id  # where it came from, though that is gone
        assert [c.id for c in client.list(parent_id=parent.id)] == [child.id]
    shown = subprocess.run(
        [sys.executable, "-m", "conductor_worker", "executions", "show", child.id,
         "--server", address], cwd=ROOT, capture_output=True, text=True, timeout=60,
        check=False)
    assert shown.returncode == 0, shown.stderr
    assert f"{parent.id} (deleted)" in shown.stdout
    as_json = subprocess.run(
        [sys.executable, "-m", "conductor_worker", "executions", "show", child.id, "--json",
         "--server", address], cwd=ROOT, capture_output=True, text=True, timeout=60,
        check=False)
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["parent_id"] == parent.id and data["parent_deleted"] is True
