"""Tasks with static cron schedules (kept apart: they fire whenever a worker runs them)."""

from __future__ import annotations

from typing import Any

from conductor_worker import Context, Event, task


@task(name="cron-static", cron={"every-minute": "* * * * *", "nightly": "0 2 * * *"})
def cron_static(event: Event, ctx: Context) -> dict[str, Any]:
    return {
        "schedule": event.schedule,
        "fire_time": event.fire_time.isoformat() if event.fire_time else None,
    }


@task(name="windowed-cron", window=("02:00", "04:00"), cron="30 1 * * *")
def windowed_cron(event: Event, ctx: Context) -> str:
    return f"ran for {event.fire_time.isoformat() if event.fire_time else None}"
