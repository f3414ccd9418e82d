"""Clients waiting for executions to finish (WaitExecution), woken without polling."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable


class Waiters:
    """Futures keyed by execution id, resolved when the execution reaches a final state.

    Resolved from this coordinator's own writes and from other coordinators' NOTIFYs.
    """

    def __init__(self) -> None:
        self._waiting: defaultdict[int, list[asyncio.Future[None]]] = defaultdict(list)

    def register(self, execution_id: int) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[execution_id].append(future)
        return future

    def unregister(self, execution_id: int, future: asyncio.Future[None]) -> None:
        futures = self._waiting.get(execution_id)
        if futures and future in futures:
            futures.remove(future)
            if not futures:
                del self._waiting[execution_id]

    def waiting(self) -> list[int]:
        """Executions someone waits for."""
        return list(self._waiting)

    def finished(self, execution_ids: Iterable[int]) -> None:
        if not self._waiting:
            return
        for execution_id in execution_ids:
            for future in self._waiting.pop(execution_id, []):
                if not future.done():
                    future.set_result(None)
