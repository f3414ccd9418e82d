"""Group commit: items submitted while a flush runs are written together in the next one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)


class Batcher(Generic[T, R]):
    """Collects items and flushes them in batches; each submitter gets its own result.

    There is no artificial delay: the first item flushes at once, and whatever arrives
    during that flush forms the next batch. A result is only handed back after the flush
    returned, so callers may treat it as durable.
    """

    def __init__(
        self, name: str, flush: Callable[[list[T]], Awaitable[list[R]]], max_batch: int = 1000
    ) -> None:
        self.name = name
        self._flush = flush
        self._max_batch = max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._ready = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run(), name=f"batcher-{self.name}")

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
            self._runner = None
        for _, future in self._pending:
            if not future.done():
                future.set_exception(ConnectionAbortedError(f"{self.name} batcher stopped"))
        self._pending.clear()

    def submit(self, item: T) -> asyncio.Future[R]:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._ready.set()
        return future

    def submit_many(self, items: list[T]) -> list[asyncio.Future[R]]:
        return [self.submit(item) for item in items]

    async def _run(self) -> None:
        while True:
            await self._ready.wait()
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            if not self._pending:
                self._ready.clear()
            if batch:
                await self._flush_batch(batch)

    async def _flush_batch(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._flush([item for item, _ in batch])
        except Exception as exc:
            log.exception("%s: flush of %d items failed", self.name, len(batch))
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
