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
        self, name: str, flush: Callable[[list[T]], Awaitable[list[R]]], max_batch: int = 1000
    ) -> None:
        self.name = name
        self._flush = flush
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
            results = await self._flush(items)
            if len(results) != len(items):
                raise RuntimeError(f"{len(results)} results for {len(items)} items")
        except Exception as exc:
            log.exception("%s: flush of %d items failed", self.name, len(items))
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        start = 0
        for group, future, single in batch:
            end = start + len(group)
            if not future.done():
                future.set_result(results[start] if single else results[start:end])
            start = end
