"""Group commit: items submitted while a flush runs are written together in the next one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)


class Batcher(Generic[T, R]):
    """Collects items and flushes them in batches; each submitter gets its own result.

    There is no artificial delay: the first item flushes at once, and whatever arrives
    during that flush forms the next batch. A result is only handed back after the flush
    returned, so callers may treat it as durable. Items submitted together (`submit_all`)
    share one future and stay in one flush, which keeps the cost per item low.
    """

    def __init__(
        self,
        name: str,
        flush: Callable[[list[T]], Awaitable[list[R]]],
        max_batch: int = 1000,
        on_item_error: Callable[[T, Exception], R] | None = None,
    ) -> None:
        self.name = name
        self._flush = flush
        #: the result of an item whose flush fails on its own (None: its submitter gets the
        #: exception; the other items of the batch are unaffected either way)
        self._on_item_error = on_item_error
        self._max_batch = max_batch
        #: (items, future, whether the future takes the one result rather than the list)
        self._pending: list[tuple[list[T], asyncio.Future[Any], bool]] = []
        self._ready = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run(), name=f"batcher-{self.name}")

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
            self._runner = None
        for _, future, _ in self._pending:
            if not future.done():
                future.set_exception(ConnectionAbortedError(f"{self.name} batcher stopped"))
        self._pending.clear()

    def submit(self, item: T) -> asyncio.Future[R]:
        """Queue one item; the future gets its result."""
        return self._queue([item], True)

    def submit_many(self, items: list[T]) -> list[asyncio.Future[R]]:
        """Queue items separately (each may land in a different flush)."""
        return [self.submit(item) for item in items]

    def submit_all(self, items: list[T]) -> asyncio.Future[list[R]]:
        """Queue items to be flushed together; the future gets their results in order."""
        return self._queue(items, False)

    def _queue(self, items: list[T], single: bool) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not items:
            future.set_result([])
            return future
        self._pending.append((items, future, single))
        self._ready.set()
        return future

    async def _run(self) -> None:
        while True:
            await self._ready.wait()
            taken, size = 0, 0
            while taken < len(self._pending) and (
                taken == 0 or size + len(self._pending[taken][0]) <= self._max_batch
            ):
                size += len(self._pending[taken][0])
                taken += 1
            batch = self._pending[:taken]
            del self._pending[:taken]
            if not self._pending:
                self._ready.clear()
            if batch:
                await self._flush_batch(batch)

    async def _flush_batch(self, batch: list[tuple[list[T], asyncio.Future[Any], bool]]) -> None:
        items = [item for group, _, _ in batch for item in group]
        try:
            results: list[R | BaseException] = list(await self._checked_flush(items))
        except Exception as exc:
            if len(items) == 1 or _systemic(exc):
                log.exception("%s: flush of %d items failed", self.name, len(items))
                self._fail(batch, exc)
                return
            # One bad item must not fail the others: write the rest in smaller flushes.
            log.warning("%s: flush of %d items failed (%s); isolating the bad ones",
                        self.name, len(items), type(exc).__name__)
            results = await self._isolate(items)
        start = 0
        for group, future, single in batch:
            end = start + len(group)
            if not future.done():
                mine = results[start:end]
                error = next((r for r in mine if isinstance(r, BaseException)), None)
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(mine[0] if single else mine)
            start = end

    async def _checked_flush(self, items: list[T]) -> list[R]:
        results = await self._flush(items)
        if len(results) != len(items):
            raise ResultCountError(f"{len(results)} results for {len(items)} items")
        return results

    async def _isolate(self, items: list[T]) -> list[R | BaseException]:
        """Flush halves separately, down to single items; an item that fails alone gets
        on_item_error's result (or its exception)."""
        if len(items) == 1:
            try:
                return list(await self._checked_flush(items))
            except Exception as exc:
                log.exception("%s: an item could not be written; skipped", self.name)
                if self._on_item_error is not None:
                    return [self._on_item_error(items[0], exc)]
                return [exc]
        middle = len(items) // 2
        results: list[R | BaseException] = []
        for half in (items[:middle], items[middle:]):
            try:
                results.extend(await self._checked_flush(half))
            except Exception as exc:
                if _systemic(exc):
                    results.extend([exc] * len(half))
                else:
                    results.extend(await self._isolate(half))
        return results

    def _fail(self, batch: list[tuple[list[T], asyncio.Future[Any], bool]], exc: Exception) -> None:
        for _, future, _ in batch:
            if not future.done():
                future.set_exception(exc)


class ResultCountError(RuntimeError):
    """The flush function broke its contract (one result per item)."""


def _systemic(exc: Exception) -> bool:
    """Errors that no item causes (the database is unreachable, or it rolled the flush back
    for a deadlock every time it was tried, conductor_server/rollbacks.py): splitting cannot
    help, and no item may be reported as not written for them (its submitter gets the error
    and the worker sends the item again)."""
    if isinstance(exc, ConnectionError | TimeoutError | ResultCountError):
        return True
    return type(exc).__name__ in ("OperationalError", "PoolTimeout", "InterfaceError",
                                  "DeadlockDetected", "SerializationFailure")
