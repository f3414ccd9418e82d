"""Tasks of the flow-control tests (per-key concurrency, rate limits, RateLimited, queues),
run in real worker processes."""

from __future__ import annotations

import os
import time
from typing import Any

from conductor_worker import Context, Event, RateLimited, task


@task(name="per-key", key="customer.id", concurrency=1, processes=1, prefetch=0)
def per_key(event: Event, ctx: Context) -> Any:
    """Appends "key start end" (wall clock) of its run to the payload's file."""
    started = time.time()
    time.sleep(event.payload.get("sleep", 0.05))
    with open(event.payload["runs"], "a") as f:
        f.write(f"{event.payload['customer']['id']} {started!r} {time.time()!r}\n")
    return event.payload["n"]


@task(name="capped-keys", key="customer", concurrency=3, key_concurrency=1, processes=2,
      prefetch=0)
def capped_keys(event: Event, ctx: Context) -> Any:
    """Both caps at once: 3 running overall, 1 per customer (keyless: the global cap only)."""
    time.sleep(event.payload.get("sleep", 0.1))
    return event.payload["n"]


@task(name="rated", rate_limit="50/s", processes=4)
def rated(event: Event, ctx: Context) -> Any:
    return event.payload


@task(name="api-a", rate_limit="5/s", rate_limit_name="shared-api", processes=2)
def api_a(event: Event, ctx: Context) -> Any:
    return "a"


@task(name="api-b", rate_limit="5/s", rate_limit_name="shared-api", processes=2)
def api_b(event: Event, ctx: Context) -> Any:
    return "b"


@task(name="push-back", key="k", processes=2)
def push_back(event: Event, ctx: Context) -> Any:
    """Raises RateLimited(retry_after) on its first run when the payload asks for it (a
    marker file says it did)."""
    marker = event.payload.get("marker")
    if marker and not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write(str(ctx.attempt))
        raise RateLimited(retry_after=event.payload["retry_after"])
    return {"attempt": ctx.attempt}


@task(name="mailer", queue="emails", processes=2)
def mailer(event: Event, ctx: Context) -> Any:
    return "sent"
