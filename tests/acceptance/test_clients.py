"""Client and AsyncClient are one API: the same test body runs against both, through a real
coordinator and worker."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conductor_worker import (
    AsyncClient,
    Client,
    ExecutionNotFound,
    InvalidArgument,
    ScheduleNotFound,
    TaskNotFound,
)
from tests.acceptance import tasks

pytestmark = pytest.mark.acceptance


class LoopThread:
    """An event loop in a thread, so a blocking test body can await AsyncClient calls."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(120)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class Blocking:
    """AsyncClient behind Client's blocking calls: each method awaited on the loop thread."""

    def __init__(self, address: str, loop: LoopThread) -> None:
        self._loop = loop

        async def make() -> AsyncClient:
            return AsyncClient(address)

        self.client: AsyncClient = loop.run(make())

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.client, name)
        if name == "iter":
            return lambda *a, **k: iter(self._loop.run(_collect(method(*a, **k))))
        return lambda *a, **k: self._loop.run(method(*a, **k))

    def close(self) -> None:
        self._loop.run(self.client.close())


async def _collect(items: Any) -> list[Any]:
    return [item async for item in items]


@pytest.fixture(params=["Client", "AsyncClient"])
def api(request: pytest.FixtureRequest, address: str) -> Iterator[Any]:
    """The client under test, called the blocking way."""
    if request.param == "Client":
        with Client(address) as client:
            yield client
        return
    loop = LoopThread()
    blocking = Blocking(address, loop)
    try:
        yield blocking
    finally:
        blocking.close()
        loop.stop()


def test_both_clients_have_the_same_methods_and_signatures() -> None:
    def public(cls: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(getattr(cls, name))
            for name in dir(cls)
            if not name.startswith("_") and callable(getattr(cls, name))
        }

    sync, aio = public(Client), public(AsyncClient)
    assert sync.keys() == aio.keys()
    assert {"invoke", "wait", "list", "iter", "schedule", "queues", "status", "logs",
            "attempts", "rerun", "retry", "bulk", "tasks", "delete_task", "emit",
            "signal"} <= sync.keys()
    for name, signature in aio.items():
        assert sync[name].parameters == signature.parameters, name
    assert inspect.iscoroutinefunction(AsyncClient.invoke)
    assert list(inspect.signature(Client.invoke).parameters)[:2] == ["self", "task"]


def test_the_api(api: Any, address: str, spawn_worker: Any, tmp_path: Any) -> None:
    spawn_worker(address)
    # invoke by name and by the task object; wait, get, list, iter
    first = api.invoke("noop", {"n": 1})
    second = api.invoke(tasks.noop, {"n": 2}, priority=5)
    assert api.wait(first, timeout=60).result == {"n": 1}
    done = api.wait(second, timeout=60)
    assert (done.state, done.result, done.task, done.priority) == (
        "succeeded", {"n": 2}, "noop", 5
    )
    assert api.get(second).finished_at is not None
    batch = api.invoke_batch(tasks.noop, [10, 11, 12])
    assert [api.wait(i, timeout=60).result for i in batch] == [10, 11, 12]
    listed = api.list("noop", state="succeeded")
    assert {e.id for e in listed} == {first, second, *batch}
    assert [e.id for e in api.iter(tasks.noop, limit=2)] == [e.id for e in listed[:2]]
    assert len(api.list(limit=None)) == 5

    # steps, failures and retries
    effects = tmp_path / "effects"
    retried = api.wait(
        api.invoke("fail-after-two-steps", {"effects": str(effects)}), timeout=60
    )
    assert (retried.state, retried.attempt, retried.result) == ("succeeded", 2, {"attempt": 2})
    assert [(s.name, s.result) for s in api.steps(retried.id)] == [("one", 1), ("two", 2)]

    # cancel a pending execution
    later = api.invoke("noop", None, run_at=datetime.now(UTC) + timedelta(hours=1))
    assert api.cancel(later).state == "cancelled"

    # schedules
    made = api.schedule("noop", "nightly", "0 3 * * *", payload={"x": 1}, timezone="UTC")
    assert (made.name, made.cron, made.payload, made.static) == (
        "nightly", "0 3 * * *", {"x": 1}, False
    )
    assert [(s.task, s.name) for s in api.schedules("noop")] == [("noop", "nightly")]
    assert api.unschedule("noop", "nightly") >= 0
    assert api.schedules(tasks.noop) == []

    # inspection
    assert any("noop" in w.tasks for w in api.workers())
    assert "noop" in {q.task for q in api.queues()}
    assert api.status().database_ok
    assert "noop" in {t.name for t in api.tasks()}
    assert [a.outcome for a in api.attempts(retried.id)] == ["failed", "succeeded"]
    assert api.logs(first) == []

    # history and workflow calls
    rerun = api.rerun(retried.id, from_step="two")
    assert (rerun.rerun_of, api.wait(rerun.id, timeout=60).state) == (retried.id, "succeeded")
    counted = api.bulk("cancel", task="noop", state="pending", dry_run=True)
    assert (counted.matched, counted.changed) == (0, 0)
    assert api.emit("nobody.listens", {"x": 1}) == []

    # errors, translated the same way
    with pytest.raises(ExecutionNotFound):
        api.get("999999999")
    with pytest.raises(TaskNotFound):
        api.invoke("no-such-task", {})
    with pytest.raises(InvalidArgument, match="state"):
        api.list(state="sleeping")
    with pytest.raises(InvalidArgument, match="payload"):
        api.invoke("noop", {1, 2})
    with pytest.raises(ScheduleNotFound):
        api.unschedule("noop", "nightly", missing_ok=False)
    with pytest.raises(TimeoutError):
        api.wait(api.invoke("noop", None, delay=3600), timeout=0.5)
