"""conductor_worker.batching: a batch handler's items end one by one (no processes here)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from pydantic import BaseModel

from conductor_worker import Event, NonRetryableError
from conductor_worker.batching import Gathering, batch_of, run_batch, run_batch_async
from conductor_worker.context import RunSpec
from conductor_worker.typed import batch_payload_type


def _spec(n: int, payload: str = "1", timeout: float = 0.0, priority: int = 0) -> RunSpec:
    return RunSpec(execution_id=str(n), token=f"t{n}", task="b", attempt=1, max_attempts=3,
                   payload_json=payload, steps={}, timeout=timeout, priority=priority)


def _batch(*payloads: str) -> RunSpec:
    return batch_of([_spec(i, p) for i, p in enumerate(payloads)])


class FakeLink:
    """What a batch's loggers forward (the worker's side of the pipe)."""

    def __init__(self) -> None:
        self.lines: list[tuple[Any, ...]] = []

    def log(self, key: Any, attempt: int, level: str, message: str) -> None:
        self.lines.append((key, attempt, level, message))


def test_a_batch_is_named_by_a_key_of_its_own():
    batch = batch_of([_spec(1, timeout=5, priority=1), _spec(2, timeout=3), _spec(3)])
    assert batch.key == ("1", "batch:t1")
    assert batch.keys == (("1", "t1"), ("2", "t2"), ("3", "t3"))
    assert (batch.timeout, batch.priority) == (3, 1)
    assert _spec(9).keys == (("9", "t9"),)


def test_each_item_gets_its_own_outcome():
    def handler(events: list[Any], ctx: Any) -> list[Any]:
        ctx.fail(2, NonRetryableError("no"))
        return [e.payload * 10 if e.payload != 1 else ValueError("one") for e in events]

    messages = run_batch(handler, _batch("0", "1", "2", "3"), "b", None, FakeLink())
    assert messages[-1] == ("batch_done", ("0", "batch:t0"))
    assert messages[0] == ("done", ("0", "t0"), "0")
    assert messages[1][:3] == ("error", ("1", "t1"), "ValueError") and messages[1][5] is True
    assert messages[2][:4] == ("error", ("2", "t2"), "NonRetryableError", "no")
    assert messages[2][5] is False
    assert messages[3] == ("done", ("3", "t3"), "30")


@pytest.mark.parametrize("results", [[1], [1, 2, 3], None, "ab"])
def test_a_wrong_number_of_results_fails_every_item(results: Any):
    messages = run_batch(lambda events, ctx: results, _batch("1", "2"), "b", None, FakeLink())
    assert [m[:3] for m in messages[:-1]] == [
        ("error", ("0", "t0"), "InvalidResult"), ("error", ("1", "t1"), "InvalidResult")]
    assert "one result per event" in messages[0][3]


def test_a_raising_handler_fails_every_item_and_unstorable_results_fail_alone():
    def boom(events: list[Any], ctx: Any) -> list[Any]:
        raise KeyError("gone")

    messages = run_batch(boom, _batch("1", "2"), "b", None, FakeLink())
    assert [(m[2], m[5]) for m in messages[:-1]] == [("KeyError", True), ("KeyError", True)]
    messages = run_batch(lambda events, ctx: [object(), 1], _batch("1", "2"), "b", None, FakeLink())
    assert messages[0][2] == "InvalidResult" and messages[1] == ("done", ("1", "t1"), "1")


def test_ctx_fail_checks_its_index():
    def handler(events: list[Any], ctx: Any) -> list[Any]:
        ctx.fail(5, "x")
        return [1]

    messages = run_batch(handler, _batch("1"), "b", None, FakeLink())
    assert messages[0][2] == "IndexError"


def test_async_batch_handlers():
    async def handler(events: list[Any], ctx: Any) -> list[Any]:
        await asyncio.sleep(0)
        return [e.payload + 1 for e in events]

    messages = asyncio.run(run_batch_async(handler, _batch("1", "2"), "b", None, FakeLink()))
    assert messages[:-1] == [("done", ("0", "t0"), "2"), ("done", ("1", "t1"), "3")]


def test_gathering_fills_and_lets_go():
    gathering = Gathering(2, 0.5)
    assert gathering.add(_spec(1)) is False
    assert gathering.remove(("1", "t1")) and not gathering.remove(("1", "t1"))
    assert gathering.add(_spec(2)) is False and gathering.add(_spec(3)) is True
    assert [s.execution_id for s in gathering.take()] == ["2", "3"]
    assert gathering.take() == []


def test_each_item_has_a_logger_of_its_own():
    link = FakeLink()

    def handler(events: list[Any], ctx: Any) -> list[Any]:
        ctx.logger.warning("about the whole batch")  # the pool process's log only
        for i, event in enumerate(events):
            ctx.logger_for(i).warning("item %s", event.payload)
        ctx.logger_for(1).error("again")
        assert ctx.logger_for(1) is ctx.logger_for(1)
        with pytest.raises(IndexError, match=r"ctx.logger_for: index 2 is not in 0..1"):
            ctx.logger_for(2)
        return [None, None]

    messages = run_batch(handler, _batch("7", "8"), "b", None, link)
    assert [m[0] for m in messages[:-1]] == ["done", "done"]
    assert link.lines == [(("0", "t0"), 1, "WARNING", "item 7"),
                          (("1", "t1"), 1, "WARNING", "item 8"),
                          (("1", "t1"), 1, "ERROR", "again")]


class Doc(BaseModel):
    id: int
    body: str


def test_typed_items_are_parsed_and_a_bad_payload_fails_alone():
    link = FakeLink()
    seen: list[Any] = []

    def handler(events: list[Event[Doc]], ctx: Any) -> list[Any]:
        seen.extend(e.payload for e in events)
        ctx.logger_for(1).warning("second of the list")
        ctx.fail(1, "third payload, second item")
        return [e.payload.id for e in events]

    kind = batch_payload_type(handler, Event)
    assert kind is Doc
    messages = run_batch(handler, _batch('{"id": 1, "body": "a"}', '{"id": "x"}',
                                         '{"id": 3, "body": "c"}'), "b", kind, link)
    assert seen == [Doc(id=1, body="a"), Doc(id=3, body="c")]
    assert messages[0] == ("done", ("0", "t0"), "1")
    assert messages[1][:3] == ("error", ("1", "t1"), "InvalidPayload")
    assert "payload.id: Input should be a valid integer" in messages[1][3]
    assert "payload.body: Field required" in messages[1][3]
    assert messages[1][5] is False, "a payload that does not fit is not retried"
    assert messages[2][:4] == ("error", ("2", "t2"), "Exception", "third payload, second item")
    assert [line[0] for line in link.lines] == [("2", "t2")], "indexes of the handler's list"


def test_only_a_list_of_typed_events_types_a_batch():
    def plain(events: list[Event], ctx: Any) -> list[Any]:
        return []

    def untyped(events, ctx):  # type: ignore[no-untyped-def]
        return []

    def sequence(events: Sequence[Event[Doc]], ctx: Any) -> list[Any]:
        return []

    def anything(events: list[Event[Any]], ctx: Any) -> list[Any]:
        return []

    assert batch_payload_type(plain, Event) is None
    assert batch_payload_type(untyped, Event) is None
    assert batch_payload_type(anything, Event) is None
    assert batch_payload_type(sequence, Event) is Doc
