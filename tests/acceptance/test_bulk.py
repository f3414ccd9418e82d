"""Bulk cancel, retry and delete by filter, with a worker leasing meanwhile."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conductor_worker import Client, InvalidArgument
from tests.conftest import wait_for

pytestmark = pytest.mark.acceptance
TASKS = "tests.acceptance.history_tasks"
N = 10_000


def _states(db: Any, task: str) -> dict[str, int]:
    rows = db.execute(
        "SELECT state::text, count(*) FROM conductor_executions WHERE task = %s GROUP BY 1",
        (task,),
    )
    return dict(rows.fetchall())


def test_bulk_cancel_of_10000_pending_while_a_worker_leases(address, spawn_worker, db):
    registrar = spawn_worker(address, TASKS)  # registers history-noop, then goes away
    registrar.stop()
    spawn_worker(address)  # serves noop
    with Client(address) as client:
        client.invoke_batch("history-noop", list(range(N)))
        dry = client.bulk("cancel", task="history-noop", dry_run=True)
        assert (dry.matched, dry.changed) == (N, 0)
        assert _states(db, "history-noop") == {"pending": N}

        client.invoke_batch("noop", list(range(N)))
        racing = client.bulk("cancel", task="noop")  # the worker leases all along
        assert 0 < racing.changed <= racing.matched <= N

        def settled() -> bool:
            return not {"pending", "running"} & set(_states(db, "noop"))

        wait_for(settled, timeout=120, what="every noop execution to end")
        states = _states(db, "noop")
        assert set(states) <= {"succeeded", "cancelled"}
        assert states["cancelled"] == racing.changed
        assert sum(states.values()) == N

        done = client.bulk("cancel", task="history-noop")
        assert (done.matched, done.changed) == (N, N)
        assert _states(db, "history-noop") == {"cancelled": N}
        again = client.bulk("cancel", task="history-noop")
        assert (again.matched, again.changed) == (0, 0)


def test_bulk_retry_and_delete_by_filter(address, spawn_worker, db):
    registrar = spawn_worker(address, TASKS)
    registrar.stop()
    with Client(address) as client:
        ids = client.invoke_batch("history-noop", list(range(50)))
        client.invoke_batch("history-noop", list(range(20)), queue="other")
        cancelled = client.bulk("cancel", task="history-noop", queue="other")
        assert cancelled.changed == 20
        retried = client.bulk("retry", task="history-noop", state="cancelled")
        assert (retried.matched, retried.changed) == (20, 20)
        assert _states(db, "history-noop") == {"pending": 70}
        client.bulk("cancel", task="history-noop")
        later = datetime.now(UTC) + timedelta(days=1)
        none = client.bulk("delete", task="history-noop", created_after=later, dry_run=True)
        assert none.matched == 0
        first = client.bulk("delete", queue="other")
        assert first.changed == 20
        assert client.bulk("delete", all=True, dry_run=True).matched == len(ids)
        assert client.bulk("delete", all=True).changed == len(ids)
        assert _states(db, "history-noop") == {}
        first = client.cancel(client.invoke("history-noop", 1, dedupe_key="k"))
        second = client.cancel(client.invoke("history-noop", 2, dedupe_key="k"))
        assert first.id != second.id
        both = client.bulk("retry", task="history-noop")
        assert (both.matched, both.changed) == (2, 1)  # one key: only the first runs again
        assert client.get(first.id).state == "pending"
        assert client.get(second.id).state == "cancelled"


def test_bulk_bad_input_is_refused_and_changes_nothing(address, spawn_worker, db):
    registrar = spawn_worker(address, TASKS)
    registrar.stop()
    with Client(address) as client:
        client.invoke_batch("history-noop", list(range(5)))
        client.bulk("cancel", task="history-noop")
        with pytest.raises(InvalidArgument, match=r"filter: empty: .*set all to confirm"):
            client.bulk("delete")
        with pytest.raises(InvalidArgument, match=r"filter.states: retry applies to failed"):
            client.bulk("retry", state="pending")
        with pytest.raises(InvalidArgument, match=r"filter.states: delete applies"):
            client.bulk("delete", state="running", all=True)
        with pytest.raises(InvalidArgument, match=r"filter.created_before: must be later"):
            now = datetime.now(UTC)
            client.bulk("cancel", created_after=now, created_before=now)
        with pytest.raises(InvalidArgument, match=r"filter.task: at most"):
            client.bulk("cancel", task="x" * 1000)
        with pytest.raises(InvalidArgument, match=r"action"):
            client.bulk("explode")
        with pytest.raises(InvalidArgument, match=r"state: unknown"):
            client.bulk("cancel", state="sleeping")
        assert _states(db, "history-noop") == {"cancelled": 5}
