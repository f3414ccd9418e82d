"""conductor_server.batcher.Batcher: group commit without artificial delay."""

from __future__ import annotations

import asyncio
import logging

import psycopg
import pytest

from conductor_server.batcher import Batcher


class FakeFlush:
    """Records batches; each flush waits for `gate` to open when one is set."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()
        self.fail_with: Exception | None = None

    async def __call__(self, items: list[int]) -> list[str]:
        self.batches.append(list(items))
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            error, self.fail_with = self.fail_with, None
            raise error
        return [f"r{item}" for item in items]


async def _wait_all(futures: list[asyncio.Future[str]]) -> list[str]:
    return list(await asyncio.wait_for(asyncio.gather(*futures), timeout=2))


def test_items_arriving_during_a_flush_form_the_next_batch() -> None:
    async def scenario() -> None:
        flush = FakeFlush()
        flush.gate = asyncio.Event()
        batcher: Batcher[int, str] = Batcher("t", flush)
        batcher.start()
        try:
            first = batcher.submit(1)
            await asyncio.wait_for(flush.started.wait(), timeout=2)  # flush of [1] is running
            during = batcher.submit_many([2, 3, 4])
            await asyncio.sleep(0)
            assert flush.batches == [[1]]  # nothing flushed while the first flush runs
            assert not first.done()  # not handed back before its flush returned
            flush.gate.set()
            assert await _wait_all([first, *during]) == ["r1", "r2", "r3", "r4"]
            assert flush.batches == [[1], [2, 3, 4]]
            assert [len(b) for b in flush.batches] == [1, 3]
        finally:
            await batcher.stop()

    asyncio.run(scenario())


def test_results_map_back_to_their_submitters() -> None:
    async def scenario() -> None:
        flush = FakeFlush()
        batcher: Batcher[int, str] = Batcher("t", flush)
        futures = {n: batcher.submit(n) for n in (5, 9, 7, 1)}
        batcher.start()
        try:
            for n, future in futures.items():
                assert await asyncio.wait_for(future, timeout=2) == f"r{n}"
            assert flush.batches == [[5, 9, 7, 1]]  # submitted before start: one batch
        finally:
            await batcher.stop()

    asyncio.run(scenario())


def test_max_batch_splits_a_backlog() -> None:
    async def scenario() -> None:
        flush = FakeFlush()
        batcher: Batcher[int, str] = Batcher("t", flush, max_batch=2)
        futures = batcher.submit_many([1, 2, 3, 4, 5])
        batcher.start()
        try:
            assert await _wait_all(futures) == ["r1", "r2", "r3", "r4", "r5"]
            assert flush.batches == [[1, 2], [3, 4], [5]]
        finally:
            await batcher.stop()

    asyncio.run(scenario())


def test_systemic_flush_error_fails_its_whole_batch_and_batcher_keeps_working(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        flush = FakeFlush()
        flush.gate = asyncio.Event()
        batcher: Batcher[int, str] = Batcher("t", flush)
        batcher.start()
        try:
            first = batcher.submit(1)
            await asyncio.wait_for(flush.started.wait(), timeout=2)
            second = batcher.submit_many([2, 3])
            flush.gate.set()
            assert await _wait_all([first, *second]) == ["r1", "r2", "r3"]

            flush.fail_with = ConnectionError("database gone")  # the next flush raises
            failing = batcher.submit_many([10, 11, 12])
            for future in failing:
                with pytest.raises(ConnectionError, match="database gone"):
                    await asyncio.wait_for(future, timeout=2)
            assert flush.batches == [[1], [2, 3], [10, 11, 12]]

            after = batcher.submit_many([20, 21])
            assert await _wait_all(after) == ["r20", "r21"]
            assert flush.batches == [[1], [2, 3], [10, 11, 12], [20, 21]]
        finally:
            await batcher.stop()

    with caplog.at_level(logging.ERROR, logger="conductor_server.batcher"):
        asyncio.run(scenario())
    assert any("flush of 3 items failed" in r.getMessage() for r in caplog.records)


def test_failure_of_first_batch_only_fails_that_batch() -> None:
    async def scenario() -> None:
        flush = FakeFlush()
        flush.fail_with = ConnectionError("boom")
        batcher: Batcher[int, str] = Batcher("t", flush)
        bad = batcher.submit_many([1, 2])
        batcher.start()
        try:
            results = await asyncio.wait_for(
                asyncio.gather(*bad, return_exceptions=True), timeout=2
            )
            assert all(isinstance(r, ConnectionError) and str(r) == "boom" for r in results)
            assert await asyncio.wait_for(batcher.submit(3), timeout=2) == "r3"
            assert flush.batches == [[1, 2], [3]]
        finally:
            await batcher.stop()

    asyncio.run(scenario())


def test_cancelled_submitter_does_not_break_the_batch() -> None:
    async def scenario() -> None:
        flush = FakeFlush()
        batcher: Batcher[int, str] = Batcher("t", flush)
        gone, kept = batcher.submit_many([1, 2])
        gone.cancel()
        batcher.start()
        try:
            assert await asyncio.wait_for(kept, timeout=2) == "r2"
            assert flush.batches == [[1, 2]]
        finally:
            await batcher.stop()

    asyncio.run(scenario())


def test_stop_fails_pending_items() -> None:
    async def scenario() -> None:
        flush = FakeFlush()
        batcher: Batcher[int, str] = Batcher("t", flush)
        pending = batcher.submit(1)  # never started, so never flushed
        await batcher.stop()
        with pytest.raises(ConnectionAbortedError):
            await pending
        assert flush.batches == []

    asyncio.run(scenario())


def test_items_submitted_together_share_a_flush_and_get_their_results_in_order() -> None:
    async def scenario() -> None:
        flush = FakeFlush()
        batcher: Batcher[int, str] = Batcher("t", flush, max_batch=3)
        single = batcher.submit(1)
        group = batcher.submit_all([2, 3, 4])  # over max_batch with the one before: next flush
        empty = batcher.submit_all([])
        last = batcher.submit_all([5])
        batcher.start()
        try:
            assert await asyncio.wait_for(single, timeout=2) == "r1"
            assert await asyncio.wait_for(group, timeout=2) == ["r2", "r3", "r4"]
            assert await asyncio.wait_for(last, timeout=2) == ["r5"]
            assert empty.result() == []
            assert flush.batches == [[1], [2, 3, 4], [5]]
        finally:
            await batcher.stop()

    asyncio.run(scenario())


def test_a_flush_returning_the_wrong_number_of_results_fails_its_batch() -> None:
    async def scenario() -> None:
        async def short(items: list[int]) -> list[str]:
            return ["only one"]

        batcher: Batcher[int, str] = Batcher("t", short)
        group = batcher.submit_all([1, 2])
        batcher.start()
        try:
            with pytest.raises(RuntimeError, match="1 results for 2 items"):
                await asyncio.wait_for(group, timeout=2)
        finally:
            await batcher.stop()

    asyncio.run(scenario())


class PoisonFlush:
    """Fails every flush that holds a poisoned item (like a row PostgreSQL refuses)."""

    def __init__(self, poison: set[int]) -> None:
        self.poison = poison
        self.batches: list[list[int]] = []

    async def __call__(self, items: list[int]) -> list[str]:
        self.batches.append(list(items))
        if self.poison & set(items):
            raise ValueError("invalid input syntax")
        return [f"r{item}" for item in items]


def test_one_bad_item_never_fails_the_others() -> None:
    async def scenario() -> None:
        flush = PoisonFlush({13})
        batcher: Batcher[int, str] = Batcher("t", flush)
        healthy = batcher.submit_all([1, 2, 3])  # another worker's message
        poisoned = batcher.submit_all([12, 13])  # the bad one shares the flush
        single = batcher.submit(4)
        batcher.start()
        try:
            assert await asyncio.wait_for(healthy, timeout=2) == ["r1", "r2", "r3"]
            assert await asyncio.wait_for(single, timeout=2) == "r4"
            with pytest.raises(ValueError, match="invalid input"):
                await asyncio.wait_for(poisoned, timeout=2)
            assert flush.batches[0] == [1, 2, 3, 12, 13, 4]
            assert [13] in flush.batches  # isolated down to the one item
        finally:
            await batcher.stop()

    asyncio.run(scenario())


def test_on_item_error_answers_the_bad_item_and_keeps_its_group() -> None:
    async def scenario() -> None:
        flush = PoisonFlush({7, 9})
        batcher: Batcher[int, str | None] = Batcher(
            "t", flush, on_item_error=lambda item, exc: None  # type: ignore[arg-type]
        )
        group = batcher.submit_all(list(range(1, 12)))  # e.g. one reaper pass
        batcher.start()
        try:
            results = await asyncio.wait_for(group, timeout=2)
            assert results == [None if n in (7, 9) else f"r{n}" for n in range(1, 12)]
            assert len(flush.batches) < 2 * 11  # halving, not one flush per item
        finally:
            await batcher.stop()

    asyncio.run(scenario())


def test_a_flush_rolled_back_for_a_deadlock_fails_its_batch_and_marks_no_item_unwritten(
) -> None:
    """A deadlock is no item's fault: splitting the batch would report the item that met it
    again as not written (a stale lease, to a worker), so every submitter gets the error and
    sends its items again."""
    async def scenario() -> None:
        flush = FakeFlush()
        flush.fail_with = psycopg.errors.DeadlockDetected("deadlock detected")
        batcher: Batcher[int, str | None] = Batcher(
            "t", flush, on_item_error=lambda _item, _exc: None)
        failing = batcher.submit_many([1, 2, 3])
        batcher.start()
        try:
            for future in failing:
                with pytest.raises(psycopg.errors.DeadlockDetected):
                    await asyncio.wait_for(future, timeout=2)
            assert flush.batches == [[1, 2, 3]]
            assert await _wait_all(batcher.submit_many([4])) == ["r4"]
        finally:
            await batcher.stop()

    asyncio.run(scenario())
