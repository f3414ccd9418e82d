"""Flow control with real workers and coordinators: per-key concurrency, rate limits,
RateLimited, queue routing (docs/flow-control.md)."""

from __future__ import annotations

import itertools
import threading
from collections import Counter, defaultdict
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from conductor_worker import Client
from tests.conftest import wait_for

pytestmark = pytest.mark.acceptance
MODULE = "tests.acceptance.flow_limit_tasks"


def states(db: Any, task: str) -> Counter[str]:
    rows = db.execute("SELECT state::text, count(*) FROM conductor_executions WHERE task = %s"
                      " GROUP BY 1", (task,)).fetchall()
    return Counter({r[0]: int(r[1]) for r in rows})


class Sampler(threading.Thread):
    """Reads the running executions of a task per key from the database, over and over."""

    def __init__(self, url: str, task: str) -> None:
        super().__init__(daemon=True)
        self.url, self.task = url, task
        self.most_per_key = 0
        self.most_keys = 0
        self.samples = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stopped.is_set():
                rows = conn.execute(
                    "SELECT concurrency_key, count(*) FROM conductor_executions"
                    " WHERE task = %s AND state = 'running' GROUP BY 1", (self.task,)
                ).fetchall()
                self.samples += 1
                if rows:
                    self.most_per_key = max(self.most_per_key, max(int(r[1]) for r in rows))
                    self.most_keys = max(self.most_keys, len(rows))


def test_per_key_limit_holds_across_two_workers_and_two_coordinators(
    start_coordinator, spawn_worker, database_url, db, tmp_path
):
    first, second = start_coordinator(), start_coordinator()
    spawn_worker(first.coordinator.address, MODULE)
    spawn_worker(second.coordinator.address, MODULE)
    sampler = Sampler(database_url, "per-key")
    sampler.start()
    log = tmp_path / "runs"
    payloads = [{"customer": {"id": f"c{k}"}, "n": n, "runs": str(log)}
                for n in range(20) for k in range(3)]
    with Client(first.coordinator.address) as client:
        half = len(payloads) // 2
        client.invoke_batch("per-key", payloads[:half])
    with Client(second.coordinator.address) as client:
        client.invoke_batch("per-key", payloads[half:])
    wait_for(lambda: states(db, "per-key")["succeeded"] == 60, timeout=120,
             what="all 60 executions to succeed")
    sampler.stopped.set()
    sampler.join()
    assert sampler.samples > 10
    assert sampler.most_per_key == 1, "two executions of one key ran at once"
    assert sampler.most_keys >= 2, "the keys never ran in parallel"
    # The handlers agree: per key, each run started after the one before it ended.
    runs: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for line in log.read_text().splitlines():
        key, start, end = line.split()
        runs[key].append((float(start), float(end)))
    assert sorted(runs) == ["c0", "c1", "c2"]
    assert sum(len(spans) for spans in runs.values()) == 60
    for key, spans in runs.items():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end, f"key {key}: a run started before the previous one ended"
    workers = db.execute("SELECT count(DISTINCT worker_id) FROM conductor_executions"
                         " WHERE task = 'per-key'").fetchone()[0]
    assert workers == 2, "both workers ran some"


class CapSampler(threading.Thread):
    """Samples the running executions of a task: most at once overall, per key, keyless."""

    def __init__(self, url: str, task: str) -> None:
        super().__init__(daemon=True)
        self.url, self.task = url, task
        self.most_total = self.most_per_key = self.most_keyless = self.samples = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stopped.is_set():
                rows = conn.execute(
                    "SELECT coalesce(concurrency_key, ''), count(*) FROM conductor_executions"
                    " WHERE task = %s AND state = 'running' GROUP BY 1", (self.task,)
                ).fetchall()
                self.samples += 1
                counts = {r[0]: int(r[1]) for r in rows}
                self.most_total = max(self.most_total, sum(counts.values()))
                self.most_keyless = max(self.most_keyless, counts.pop("", 0))
                self.most_per_key = max(self.most_per_key, *counts.values(), 0)


def test_a_global_cap_and_a_key_cap_hold_together_across_workers_and_coordinators(
    start_coordinator, spawn_worker, database_url, db
):
    """@task(concurrency=3, key="customer", key_concurrency=1): 5 keys x 4 executions and
    keyless ones, 2 workers (4 pool processes, more than the cap) on 2 coordinators."""
    first, second = start_coordinator(), start_coordinator()
    spawn_worker(first.coordinator.address, MODULE)
    spawn_worker(second.coordinator.address, MODULE)
    sampler = CapSampler(database_url, "capped-keys")
    sampler.start()
    # each key's executions one after another: without the key cap they would run together
    keyed = [{"customer": f"c{k}", "n": n} for k in range(5) for n in range(4)]
    with Client(first.coordinator.address) as client:
        client.invoke_batch("capped-keys", keyed[:10])
    with Client(second.coordinator.address) as client:
        client.invoke_batch("capped-keys", keyed[10:])
    wait_for(lambda: states(db, "capped-keys")["succeeded"] == 20, timeout=120,
             what="the 20 keyed executions to succeed")
    assert sampler.most_total == 3, f"at most 3 overall, and reached: {sampler.most_total}"
    assert sampler.most_per_key == 1, "two executions of one key ran at once"
    # Keyless executions: not limited per key, only by the global cap.
    with Client(second.coordinator.address) as client:
        client.invoke_batch("capped-keys", [{"n": n, "sleep": 0.3} for n in range(8)])
    wait_for(lambda: states(db, "capped-keys")["succeeded"] == 28, timeout=120,
             what="the 8 keyless executions to succeed")
    sampler.stopped.set()
    sampler.join()
    assert sampler.samples > 10
    assert sampler.most_total == 3, f"the global cap was overshot: {sampler.most_total}"
    assert sampler.most_keyless >= 2, "keyless executions were limited like one key"
    workers = db.execute("SELECT count(DISTINCT worker_id) FROM conductor_executions"
                         " WHERE task = 'capped-keys'").fetchone()[0]
    assert workers == 2, "both workers ran some"


def test_rate_limit_holds_across_two_workers_and_two_coordinators(
    start_coordinator, spawn_worker, db
):
    first, second = start_coordinator(), start_coordinator()
    spawn_worker(first.coordinator.address, MODULE)
    spawn_worker(second.coordinator.address, MODULE)
    with Client(first.coordinator.address) as client:
        # warm up: both workers' pool processes start on demand (their start-up is not
        # what this measures); the bucket refills to its burst meanwhile
        for execution_id in client.invoke_batch("rated", list(range(8))):
            client.wait(execution_id, timeout=60)
        batch = [int(i) for i in client.invoke_batch("rated", list(range(1200)))]
    wait_for(lambda: states(db, "rated")["succeeded"] >= 608, timeout=60,
             what="600 executions to succeed")
    starts = [r[0] for r in db.execute(
        "SELECT started_at FROM conductor_executions WHERE id = ANY(%s)"
        " AND started_at IS NOT NULL ORDER BY started_at", (batch,)).fetchall()]
    window = [s for s in starts if s < starts[0] + timedelta(seconds=10)]
    burst = 50  # the bucket starts full: the count of "50/s"
    assert len(window) <= 500 + burst, f"{len(window)} started in 10 s"
    assert len(window) >= 0.9 * 500, f"only {len(window)} started in 10 s"
    workers = {r[0] for r in db.execute(
        "SELECT DISTINCT worker_id FROM conductor_executions WHERE task = 'rated'"
        " AND worker_id IS NOT NULL")}
    assert len(workers) == 2


def test_rate_limited_pauses_the_key_for_every_worker_without_an_attempt(
    start_coordinator, spawn_worker, db, tmp_path
):
    first, second = start_coordinator(), start_coordinator()
    spawn_worker(first.coordinator.address, MODULE)
    spawn_worker(second.coordinator.address, MODULE)
    marker = str(tmp_path / "pushed-back")
    with Client(first.coordinator.address) as client:
        pusher = client.invoke("push-back", {"k": "x", "marker": marker, "retry_after": 1})
        wait_for(lambda: db.execute("SELECT paused_until FROM conductor_rate_buckets WHERE"
                            " name = 'push-back' AND key = 'x'").fetchone() is not None,
                 what="the pause to be recorded")
        paused_until = db.execute("SELECT paused_until FROM conductor_rate_buckets WHERE"
                                  " name = 'push-back' AND key = 'x'").fetchone()[0]
        same_key = client.invoke_batch("push-back", [{"k": "x"}] * 4)
    with Client(second.coordinator.address) as client:
        other_key = client.invoke_batch("push-back", [{"k": "y"}] * 4)
        done = client.wait(pusher, timeout=60)
        for eid in same_key + other_key:
            client.wait(eid, timeout=60)
        pushed = client.get(pusher)
    assert done.state == "succeeded"
    assert done.result == {"attempt": 1}, "the release counted no attempt"
    assert [a.outcome for a in pushed.attempts] == ["released", "succeeded"]
    assert pushed.attempts[0].reason == "rate_limited"
    started = dict(db.execute("SELECT id::text, started_at FROM conductor_executions"
                              " WHERE task = 'push-back'").fetchall())
    for eid in [*same_key]:
        assert started[eid] >= paused_until, "key x ran during its pause"
    assert pushed.attempts[1].started_at >= paused_until
    assert max(started[e] for e in other_key) < min(started[e] for e in same_key), \
        "key y waited for key x's pause"


def test_queues_route_work_to_the_workers_that_take_them(
    coordinator, spawn_worker, db
):
    address = coordinator.coordinator.address
    emails = spawn_worker(address, MODULE, "--queues", "emails")
    reports = spawn_worker(address, MODULE, "--queues", "reports,bulk")
    with Client(address) as client:
        default = client.invoke("mailer", None)
        routed = client.invoke("mailer", None, queue="reports")
        nobody = client.invoke("mailer", None, queue="nobody")
        ran_on = {}
        for eid in (default, routed):
            assert client.wait(eid, timeout=60).state == "succeeded"
            ran_on[eid] = client.get(eid).attempts[-1].worker_id
        assert f"-{emails.pid}-" in ran_on[default], "the task's default queue is emails"
        assert f"-{reports.pid}-" in ran_on[routed]
        assert client.get(default).queue == "emails"
        why = client.get(nobody).explanation
    assert why is not None and why.reason == "no_worker"
    assert "queue 'nobody'" in why.message
    assert states(db, "mailer") == Counter({"succeeded": 2, "pending": 1})


def test_explain_what_a_workflow_waits_for(coordinator, spawn_worker, tmp_path):
    address = coordinator.coordinator.address
    spawn_worker(address, "tests.acceptance.workflow_tasks")
    effects, hold = str(tmp_path / "effects"), tmp_path / "hold"
    hold.write_text("wait")
    with Client(address) as client:
        approval = client.invoke("wf-approval", {"effects": effects})
        paid = client.invoke("wf-wait-event", {"order": 1})
        parent = client.invoke("wf-parent", {"effects": effects, "hold": str(hold)})

        def explained(eid: str, reason: str) -> Any:
            found = client.get(eid).explanation
            return found if found is not None and found.reason == reason else None

        signal = wait_for(lambda: explained(approval, "waiting_signal"), what="the signal")
        assert "step 'decision'" in signal.message
        event = wait_for(lambda: explained(paid, "waiting_event"), what="the event")
        assert "step 'paid'" in event.message
        children = wait_for(lambda: explained(parent, "waiting_children"), what="the child")
        child = client.list(parent_id=parent)[0]
        assert children.execution_ids == (child.id,)
        hold.write_text("go")
        assert client.wait(parent, timeout=60).state == "succeeded"
