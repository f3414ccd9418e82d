"""The public API's calls the dashboard needed first (any client may use them): finished
executions per task over the last hour, for throughput charts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from conductor.v1 import client_pb2

from .clock import Clock
from .models import InvalidArgument
from .settings import Settings
from .store import Store
from .timestamps import timestamp

Context = grpc.aio.ServicerContext[Any, Any]

#: ListTaskActivity's defaults and bounds
DEFAULT_WINDOW, MIN_WINDOW, MAX_WINDOW = 3600, 60, 86400
DEFAULT_BUCKETS, MAX_BUCKETS = 12, 120


class DashboardCalls:
    """ListTaskActivity."""

    store: Store
    clock: Clock
    settings: Settings

    async def ListTaskActivity(  # noqa: N802
        self, request: client_pb2.ListTaskActivityRequest, context: Context
    ) -> client_pb2.ListTaskActivityResponse:
        window = request.window_seconds or DEFAULT_WINDOW
        if not MIN_WINDOW <= window <= MAX_WINDOW:
            raise InvalidArgument(
                "window_seconds", f"must be {MIN_WINDOW}..{MAX_WINDOW}, got {window}"
            )
        buckets = request.buckets or DEFAULT_BUCKETS
        if not 1 <= buckets <= MAX_BUCKETS:
            raise InvalidArgument("buckets", f"must be 1..{MAX_BUCKETS}, got {buckets}")
        until = self.clock.now()
        since = until - timedelta(seconds=window)
        counts = await self.store.task_activity(since, until, window / buckets)
        seen_after = datetime.now(UTC) - timedelta(seconds=2 * self.settings.lease_timeout)
        tasks = {t.name: _empty(t.name, buckets) for t in await self.store.list_tasks(seen_after)}
        for task, state, bucket, count in counts:
            entry = tasks.get(task)
            if entry is not None and 0 <= bucket < buckets:
                getattr(entry, state)[bucket] += count
        return client_pb2.ListTaskActivityResponse(
            window_end=timestamp(until), window_seconds=window, buckets=buckets,
            tasks=[tasks[name] for name in sorted(tasks)],
        )


def _empty(task: str, buckets: int) -> client_pb2.TaskActivity:
    zeros = [0] * buckets
    return client_pb2.TaskActivity(task=task, succeeded=zeros, failed=zeros, cancelled=zeros)
