"""A child task served only by workers of another coordinator (test_workflows.py)."""

from __future__ import annotations

from typing import Any

from conductor_worker import Context, Event, task


@task(name="wf-remote-child")
def remote_child(event: Event, ctx: Context) -> Any:
    return event.payload * 2
