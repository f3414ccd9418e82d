"""Tasks of the wait-outcome limit and orphaned-child tests (tests/acceptance/
test_wait_limits.py): children with large results, waits whose outcome is too large."""

from __future__ import annotations

import time
from typing import Any

from conductor_worker import Context, Event, ResultTooLarge, task

from .tasks import effect


def _caught(exc: ResultTooLarge) -> dict[str, Any]:
    return {"step": exc.step, "size": exc.size, "steps_bytes": exc.steps_bytes,
            "limit": exc.limit, "message": str(exc)}


@task(name="wl-big", processes=1, threads=8)
def big(event: Event, ctx: Context) -> Any:
    deadline = time.monotonic() + 60
    while event.payload.get("slow") and time.monotonic() < deadline:
        ctx.checkpoint()  # until the parent's timeout cancels it
        time.sleep(0.05)
    return "x" * event.payload["size"]


@task(name="wl-fan", processes=1, max_attempts=2)
def fan(event: Event, ctx: Context) -> Any:
    """Fans out to children returning `size` characters each; with `catch`, handles the
    too-large outcome, records a step after it, and fails its first attempt (retryable)."""
    p = event.payload
    effect(p["effects"], f"start-{ctx.attempt}")
    try:
        results = ctx.invoke_many("fan", "wl-big", [{"size": p["size"]}] * p["n"])
    except ResultTooLarge as exc:
        if not p.get("catch"):
            raise
        after = ctx.step("after", lambda: "small")
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails after the wait") from None
        return {"caught": _caught(exc), "after": after}
    return {"count": len(results), "sizes": sorted({len(r) for r in results})}


@task(name="wl-fan-timeout", processes=1)
def fan_timeout(event: Event, ctx: Context) -> Any:
    """Fast children with large results and a slow one, with a timeout."""
    payloads = [{"size": 10_000}] * 15 + [{"size": 1, "slow": True}]
    try:
        ctx.invoke_many("fan", "wl-big", payloads, timeout=30)
    except ResultTooLarge as exc:
        return {"caught": _caught(exc)}
    return {"caught": None}


@task(name="wl-invoke", processes=1)
def invoke_one(event: Event, ctx: Context) -> Any:
    """One child with a large result; the error is not caught (fails for good)."""
    return len(ctx.invoke("one", "wl-big", {"size": event.payload["size"]}))


@task(name="wl-event", processes=1)
def wait_event(event: Event, ctx: Context) -> Any:
    """A step of `pad` characters, then a wait for an event."""
    ctx.step("pad", lambda: "p" * event.payload["pad"])
    try:
        return {"event": ctx.wait_for_event("ev", "wl.big", timeout=600)}
    except ResultTooLarge as exc:
        return {"caught": _caught(exc)}


@task(name="wl-signal", processes=1)
def wait_signal(event: Event, ctx: Context) -> Any:
    ctx.step("pad", lambda: "p" * event.payload["pad"])
    try:
        return {"signal": ctx.wait_for_signal("big", timeout=600)}
    except ResultTooLarge as exc:
        return {"caught": _caught(exc)}


@task(name="wl-signal-then-step", processes=1)
def signal_then_step(event: Event, ctx: Context) -> Any:
    """A wait answered at once (the signal was sent before), then a step that would take
    the steps past the limit with it."""
    signal = ctx.wait_for_signal("early", timeout=600)
    try:
        ctx.step("more", lambda: "m" * event.payload["more"])
    except ValueError as exc:
        return {"signal": len(signal), "refused": str(exc)}
    return {"signal": len(signal), "refused": None}


@task(name="wl-short-lived", processes=1, retention={"succeeded": "1h"})
def short_lived_parent(event: Event, ctx: Context) -> Any:
    return ctx.invoke("child", "wl-long-lived", event.payload)


@task(name="wl-long-lived", processes=1, retention={"succeeded": "30d"})
def long_lived_child(event: Event, ctx: Context) -> Any:
    return {"child of": event.payload}
