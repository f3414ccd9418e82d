"""Workflows through a real coordinator and real worker processes: children, fan-out,
cancellation cascade, signals, events (docs/workflows.md)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conductor.v1 import client_pb2
from conductor_worker import Client, FailedPrecondition, InvalidArgument
from tests.conftest import ROOT, wait_for

pytestmark = pytest.mark.acceptance

TASKS = "tests.acceptance.workflow_tasks"


@pytest.fixture
def coordinator(start_coordinator):
    return start_coordinator(lease_timeout=6.0)


@pytest.fixture
def client(address: str) -> Any:
    with Client(address) as c:
        yield c


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_parent_child_grandchild_survive_sigkill_and_each_effect_happens_once(
    address, spawn_worker, client, tmp_path
):
    effects, hold = tmp_path / "effects", tmp_path / "hold"
    hold.write_text("wait")
    worker = spawn_worker(address, TASKS)
    parent_id = client.invoke("wf-parent", {"effects": str(effects), "hold": str(hold)})
    # The grandchild runs: the parent and the child wait, released (no lease).
    wait_for(lambda: "grandchild-started" in lines(effects), what="the grandchild to start")
    parent = client.get(parent_id)
    assert parent.state == "pending" and parent.waiting_for == "children:child"
    (child,) = client.list(parent_id=parent_id)
    assert child.task == "wf-child" and child.parent_id == parent_id
    assert client.get(child.id).waiting_for == "children:grandchild"
    # SIGKILL while the grandchild runs (and its ancestors wait).
    os.kill(worker.pid, signal.SIGKILL)
    worker.process.wait(10)
    hold.write_text("go")
    spawn_worker(address, TASKS)
    done = client.wait(parent_id, timeout=120)
    assert done.state == "succeeded", done
    assert done.result == {"child": {"grandchild": "leaf"}}
    seen = lines(effects)
    assert seen.count("child-effect") == 1
    assert seen.count("grandchild-effect") == 1
    assert seen.count("parent-after-child") == 1
    # code before the invoke ran again when the parent resumed, in the same attempt: a
    # release to wait counts none
    assert {line for line in seen if line.startswith("parent-start")} == {"parent-start-1"}
    assert client.get(parent_id).attempt == 1


def test_a_child_on_another_coordinator_resumes_its_parent(
    start_coordinator, coordinator, address, spawn_worker, client
):
    other = start_coordinator(lease_timeout=6.0)
    spawn_worker(address, TASKS)
    spawn_worker(other.coordinator.address, "tests.acceptance.workflow_remote")
    parent_id = client.invoke("wf-remote-parent", 21)
    assert client.wait(parent_id, timeout=60).result == 42
    (child,) = client.list(parent_id=parent_id)
    assert child.task == "wf-remote-child" and child.state == "succeeded"


def test_fan_out_1000_children_with_a_failing_one(address, spawn_worker, client, db):
    spawn_worker(address, TASKS)
    payloads = [{"i": i, "fail": i == 500} for i in range(1000)]
    parent_id = client.invoke("wf-fan", {"task": "wf-maybe-fail", "payloads": payloads})
    done = client.wait(parent_id, timeout=180)
    assert done.state == "succeeded", done
    results = done.result
    assert len(results) == 1000
    assert results[:500] == list(range(500)) and results[501:] == list(range(501, 1000))
    failed = results[500]
    assert failed["type"] == "ValueError" and failed["message"] == "child 500 says no"
    children = client.list(parent_id=parent_id, limit=None)
    assert len(children) == 1000
    assert failed["failed"] in {c.id for c in children}
    # one write created them all, and the parent was never leased while it waited
    assert done.attempt == 1
    (count,) = db.execute(
        "SELECT count(DISTINCT created_at) FROM conductor_executions WHERE parent_id = %s",
        (int(parent_id),),
    ).fetchone()
    assert count == 1


def test_fan_out_timeout_cancels_unfinished_children(address, spawn_worker, client, clock):
    spawn_worker(address, TASKS)
    payloads = [{"i": 0}, {"i": 1, "slow": 60}]
    parent_id = client.invoke("wf-fan-timeout", {"payloads": payloads, "timeout": 30})
    wait_for(lambda: client.get(parent_id).waiting_for == "children:fan", what="the wait")
    children = client.list(parent_id=parent_id)
    slow = next(c for c in children if c.payload["i"] == 1)
    fast = next(c for c in children if c.payload["i"] == 0)
    assert client.wait(fast.id, timeout=60).state == "succeeded"
    wait_for(lambda: client.get(slow.id).state == "running", what="the slow child to run")
    clock.advance(timedelta(seconds=31))
    done = client.wait(parent_id, timeout=60)
    assert done.result == {"timeout": True, "unfinished": [slow.id]}
    assert client.wait(slow.id, timeout=90).state == "cancelled"


def test_cancelling_a_parent_cancels_its_descendants(address, spawn_worker, client, tmp_path):
    effects, hold = tmp_path / "effects", tmp_path / "hold"
    hold.write_text("wait")
    spawn_worker(address, TASKS)
    parent_id = client.invoke("wf-parent", {"effects": str(effects), "hold": str(hold)})
    wait_for(lambda: "grandchild-started" in lines(effects), what="the grandchild to start")
    (child,) = client.list(parent_id=parent_id)
    (grandchild,) = client.list(parent_id=child.id)
    assert client.cancel(parent_id).state == "cancelled"
    assert client.wait(child.id, timeout=30).state == "cancelled"
    # the running grandchild is told, and stops at its next step
    hold.write_text("go")
    assert client.wait(grandchild.id, timeout=60).state == "cancelled"
    assert "grandchild-effect" not in lines(effects)


def test_cancelling_a_parent_while_its_children_complete_leaves_nothing_stuck(
    address, spawn_worker, client, db
):
    """Cancel cascades down (parent row, then children) while children finishing resolve
    the parent's wait (child row, then the parent's): both orders meet here, and whichever
    side PostgreSQL may abort is retried, so every execution ends."""
    spawn_worker(address, TASKS)
    spawn_worker(address, TASKS)
    parent_id = client.invoke("wf-fan", {"payloads": list(range(300))})

    def finished_children() -> int:
        (count,) = db.execute("SELECT count(*) FROM conductor_executions WHERE parent_id = %s"
                              " AND state = 'succeeded'", (int(parent_id),)).fetchone()
        return int(count)

    wait_for(lambda: finished_children() >= 30, timeout=120, what="children to complete")
    assert client.cancel(parent_id).state == "cancelled"
    children = client.list(parent_id=parent_id, limit=None)
    assert len(children) == 300
    for child in children:
        assert client.wait(child.id, timeout=120).state in ("succeeded", "cancelled")
    assert {c.state for c in client.list(parent_id=parent_id, limit=None)} <= {
        "succeeded", "cancelled"}
    assert client.get(parent_id).state == "cancelled"


def test_invoking_an_unknown_task_fails_the_parent_with_a_clear_error(
    address, spawn_worker, client, db
):
    spawn_worker(address, TASKS)
    parent_id = client.invoke("wf-invoke-unknown", {})
    done = client.wait(parent_id, timeout=60)
    assert done.state == "failed"
    assert "no task named 'no-such-task'" in done.error.message
    (count,) = db.execute("SELECT count(*) FROM conductor_executions WHERE parent_id = %s",
                          (int(parent_id),)).fetchone()
    (waits,) = db.execute("SELECT count(*) FROM conductor_waits").fetchone()
    assert count == 0 and waits == 0


# -- signals ------------------------------------------------------------------------------


@pytest.mark.parametrize("approve", [True, False])
def test_approval_flow_with_a_signal(address, spawn_worker, client, tmp_path, approve):
    effects = tmp_path / "effects"
    spawn_worker(address, TASKS)
    run = client.invoke("wf-approval", {"effects": str(effects)})
    wait_for(lambda: client.get(run).waiting_for == "signal:signal:decision",
             what="the run to wait for its signal")
    assert client.get(run).state == "pending"
    client.signal(run, "decision", {"approve": approve, "by": "ana"})
    done = client.wait(run, timeout=60)
    assert done.result == {"outcome": "approved" if approve else "rejected", "by": "ana"}
    assert lines(effects) == ["requested", f"decided-{approve}"]


def test_a_rerun_from_a_step_before_a_wait_waits_again(address, spawn_worker, client,
                                                       tmp_path):
    """A wait's outcome is a step in save order: a rerun from the step before it does not
    copy it (the rerun waits for a signal of its own), one from a later point would."""
    spawn_worker(address, TASKS)
    effects = tmp_path / "effects"
    run = client.invoke("wf-approval", {"effects": str(effects)})
    wait_for(lambda: client.get(run).waiting_for is not None, what="the wait")
    client.signal(run, "decision", {"approve": True, "by": "ana"})
    assert client.wait(run, timeout=60).result == {"outcome": "approved", "by": "ana"}
    assert [s.name for s in client.steps(run)] == ["requested", "signal:decision"]
    again = client.rerun(run, from_step="requested").id
    wait_for(lambda: client.get(again).waiting_for is not None, what="the rerun's own wait")
    client.signal(again, "decision", {"approve": False, "by": "bo"})
    assert client.wait(again, timeout=60).result == {"outcome": "rejected", "by": "bo"}
    assert lines(effects) == ["requested", "decided-True", "requested", "decided-False"]


def test_a_signal_sent_before_the_wait_is_kept(address, spawn_worker, client, tmp_path):
    spawn_worker(address, TASKS).stop()  # registers the task, then is gone
    run = client.invoke("wf-approval", {"effects": str(tmp_path / "effects")})
    client.signal(run, "decision", {"approve": True, "by": "early"})
    spawn_worker(address, TASKS)
    assert client.wait(run, timeout=60).result == {"outcome": "approved", "by": "early"}


def test_a_signal_wait_times_out_and_a_finished_run_refuses_signals(
    address, spawn_worker, client, tmp_path, clock
):
    spawn_worker(address, TASKS)
    run = client.invoke("wf-approval", {"effects": str(tmp_path / "e"), "timeout": 60})
    wait_for(lambda: client.get(run).waiting_for is not None, what="the wait")
    clock.advance(timedelta(seconds=61))
    assert client.wait(run, timeout=60).result == {"outcome": "timed out"}
    with pytest.raises(FailedPrecondition, match="already succeeded"):
        client.signal(run, "decision", {"approve": True, "by": "late"})


# -- events -------------------------------------------------------------------------------


def _count(db, task: str) -> int:
    row = db.execute("SELECT count(*) FROM conductor_executions WHERE task = %s", (task,))
    return int(row.fetchone()[0])


def test_1000_emits_times_3_subscribers_and_filters(address, spawn_worker, client, db):
    spawn_worker(address, TASKS).stop()  # registers the subscriptions
    created = [client.emit("bulk.event", {"i": i}) for i in range(1000)]
    assert all(len(ids) == 3 for ids in created)
    assert [_count(db, t) for t in ("wf-bulk-a", "wf-bulk-b", "wf-bulk-c")] == [1000] * 3
    for i in range(100):
        client.emit("order.created", {"i": i, "region": "eu" if i % 2 else "us",
                                      "customer": {"tier": "gold" if i % 4 == 0 else "x"}})
    assert _count(db, "wf-on-created") == 100
    assert _count(db, "wf-on-created-eu") == 50  # {"region": "eu"}
    assert _count(db, "wf-on-created-gold") == 25  # {"customer.tier": "gold"}
    # a dedupe key makes a repeated emit create nothing, and answer the first one's ids
    first = client.emit("other.event", {"x": 1}, dedupe_key="k-1")
    assert len(first) == 1 and client.emit("other.event", {"x": 1}, dedupe_key="k-1") == first
    assert _count(db, "wf-bulk-c") == 1001


def test_ctx_emit_happens_once_and_subscribers_run(address, spawn_worker, client):
    spawn_worker(address, TASKS)
    run = client.invoke("wf-emitter", {"region": "eu", "n": 1})
    done = client.wait(run, timeout=60)
    assert done.state == "succeeded" and len(done.result) == 2
    outputs = [client.wait(i, timeout=60).result for i in done.result]
    assert {"seen": {"region": "eu", "n": 1}} in outputs
    assert {"eu": {"region": "eu", "n": 1}} in outputs


def test_wait_for_event_only_sees_events_after_the_wait_across_coordinators(
    start_coordinator, coordinator, address, spawn_worker, client
):
    other = start_coordinator(lease_timeout=6.0)
    spawn_worker(address, TASKS).stop()
    run = client.invoke("wf-wait-event", {"order": 7})
    client.emit("order.paid", {"order": 7, "n": "before"})  # before the wait: not delivered
    spawn_worker(address, TASKS)
    wait_for(lambda: client.get(run).waiting_for == "event:paid", what="the wait")
    with Client(other.coordinator.address) as elsewhere:
        elsewhere.emit("order.paid", {"order": 8, "n": "other order"})
        elsewhere.emit("order.paid", {"order": 7, "n": "after"})
    assert client.wait(run, timeout=60).result == {"paid": {"order": 7, "n": "after"}}


def test_an_event_committed_while_the_wait_opens_is_delivered(
    address, spawn_worker, client, database_url, db
):
    """An emit whose transaction is still open when the wait is being recorded: the wait's
    opening waits for it (their lock), then finds the event emitted since it began."""
    spawn_worker(address, TASKS)
    emitted_at = datetime.now(UTC) + timedelta(minutes=5)  # after the wait began
    with psycopg.connect(database_url) as emitting:
        emitting.execute("SELECT conductor_emit('order.paid', %s::jsonb, NULL, %s)",
                         (json.dumps({"order": 5, "n": "racing"}), emitted_at))
        run = client.invoke("wf-wait-event", {"order": 5})
        wait_for(lambda: _waits_for_advisory_lock(db), timeout=60,
                 what="the wait's opening to wait for the emit's transaction")
        emitting.commit()
    assert client.wait(run, timeout=60).result == {"paid": {"order": 5, "n": "racing"}}


def _waits_for_advisory_lock(db: Any) -> bool:
    (waiting,) = db.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type ="
                            " 'Lock' AND wait_event = 'advisory'").fetchone()
    return bool(waiting)


def test_wait_for_event_times_out(address, spawn_worker, client, clock):
    spawn_worker(address, TASKS)
    run = client.invoke("wf-wait-event", {"order": 1, "timeout": 120})
    wait_for(lambda: client.get(run).waiting_for == "event:paid", what="the wait")
    clock.advance(timedelta(seconds=121))
    assert client.wait(run, timeout=60).result == {"timeout": True}


def test_transactional_emit_exists_only_if_the_transaction_commits(
    address, spawn_worker, client, database_url
):
    spawn_worker(address, TASKS)
    with psycopg.connect(database_url) as conn:
        conn.execute("SELECT conductor_emit('order.created', '{\"tx\": \"rolled back\"}')")
        conn.rollback()
        with conn.transaction():
            (ids,) = conn.execute(
                "SELECT conductor_emit('order.created', '{\"tx\": \"committed\"}')"
            ).fetchone()
    assert len(ids) == 1
    done = client.wait(str(ids[0]), timeout=60)  # picked up by NOTIFY, no invoke call
    assert done.result == {"seen": {"tx": "committed"}}
    payloads = [e.payload for e in client.list(task="wf-on-created")]
    assert payloads == [{"tx": "committed"}]


def test_bad_event_input_is_refused_naming_the_field(address, spawn_worker, client, db):
    with pytest.raises(InvalidArgument, match=r"^event: "):
        client.emit("not an event!", {})
    with pytest.raises(InvalidArgument, match=r"^payload_json: not valid JSON"):
        client._call(client._stub.Emit, client_pb2.EmitRequest(event="ok.e", payload_json="{"))
    with pytest.raises(InvalidArgument, match=r"^dedupe_key: "):
        client.emit("ok.event", {}, dedupe_key="k" * 501)
    (events,) = db.execute("SELECT count(*) FROM conductor_events").fetchone()
    assert events == 0


# -- the CLI ------------------------------------------------------------------------------


def _cli(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conductor_cli", *args, "--server", address],
        cwd=ROOT, capture_output=True, text=True, timeout=90, check=False,
    )


def test_cli_emit_signal_and_the_tree(address, spawn_worker, client, tmp_path):
    spawn_worker(address, TASKS)
    out = _cli(address, "emit", "bulk.event", "--payload", '{"via": "cli"}')
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["execution_ids"]) == 3
    bad = _cli(address, "emit", "bad event", "--payload", "{}")
    assert bad.returncode == 1 and "event: " in bad.stderr
    run = client.invoke("wf-approval", {"effects": str(tmp_path / "e")})
    wait_for(lambda: client.get(run).waiting_for is not None, what="the wait")
    shown = _cli(address, "executions", "show", run)
    assert "signal:signal:decision" in shown.stdout, shown.stdout
    out = _cli(address, "signal", run, "decision", "--payload", '{"approve": true, "by": "cli"}')
    assert out.returncode == 0, out.stderr
    assert client.wait(run, timeout=60).result == {"outcome": "approved", "by": "cli"}
    late = _cli(address, "signal", run, "decision")
    assert late.returncode == 1 and "already succeeded" in late.stderr
    parent = client.invoke("wf-fan", {"payloads": [1, 2]})
    client.wait(parent, timeout=60)
    listed = _cli(address, "executions", "ls", "--parent", parent, "--json")
    assert sorted(e["payload"] for e in json.loads(listed.stdout)) == [1, 2]
    shown = _cli(address, "executions", "show", parent)
    assert "children:" in shown.stdout and shown.stdout.count("wf-noop") == 2


# -- the examples of docs/workflows.md ---------------------------------------------------


def test_the_documented_examples_run(address, spawn_worker, client):
    spawn_worker(address, "examples.workflows")
    shipped = client.invoke("order-saga", {"order": 1, "amount": 30})
    moon = client.invoke("order-saga", {"order": 2, "amount": 30, "ship_to": "moon"})
    expense = client.invoke("expense-approval", {"expense": 7, "amount": 900})
    assert client.wait(shipped, timeout=120).result == {
        "order": 1, "status": "shipped", "tracking": "t-1"}
    assert client.wait(moon, timeout=120).result == {
        "order": 2, "status": "cancelled", "why": "no carrier ships to the moon"}
    tasks = sorted(c.task for c in client.list(parent_id=moon))
    assert tasks == ["charge-card", "refund-card", "release-stock", "reserve-stock",
                     "ship-order"]
    notified = wait_for(lambda: client.list(task="notify-shipped", state="succeeded"),
                        what="the order.shipped subscriber")
    assert [n.result for n in notified] == ["mail sent for order 1"]
    wait_for(lambda: client.get(expense).waiting_for, what="the approval to wait")
    client.signal(expense, "decision", {"approve": True, "by": "ana"})
    assert client.wait(expense, timeout=120).result == {
        "expense": 7, "status": "paid", "by": "ana", "paid": 900}
