"""Workflow tasks the acceptance tests run in real worker processes (tests/acceptance/
test_workflows.py). Side effects are appended to the file named in the payload."""

from __future__ import annotations

import time
from typing import Any

from conductor_worker import (
    AsyncContext,
    ChildFailed,
    ChildTimeout,
    Context,
    Event,
    EventTimeout,
    SignalTimeout,
    task,
)

from .tasks import effect


@task(name="wf-parent", processes=2)
def parent(event: Event, ctx: Context) -> Any:
    p = event.payload
    effect(p["effects"], f"parent-start-{ctx.attempt}")
    child = ctx.invoke("child", "wf-child", p)
    effect(p["effects"], "parent-after-child")
    return {"child": child}


@task(name="wf-child", processes=2)
def child(event: Event, ctx: Context) -> Any:
    p = event.payload
    ctx.step("effect", lambda: effect(p["effects"], "child-effect"))
    grandchild = ctx.invoke("grandchild", "wf-grandchild", p)
    return {"grandchild": grandchild}


@task(name="wf-grandchild", processes=2)
def grandchild(event: Event, ctx: Context) -> Any:
    p = event.payload
    if p.get("hold"):  # the test SIGKILLs the worker while this runs, then clears it
        ctx.step("started", lambda: effect(p["effects"], "grandchild-started"))
        deadline = time.monotonic() + 60
        while p["hold"] and time.monotonic() < deadline:
            time.sleep(0.05)
            try:
                with open(p["hold"]) as f:
                    if f.read().strip() == "go":
                        break
            except OSError:
                break
    ctx.step("effect", lambda: effect(p["effects"], "grandchild-effect"))
    return "leaf"


@task(name="wf-noop", processes=2, threads=8)
def noop(event: Event, ctx: Context) -> Any:
    return event.payload


@task(name="wf-maybe-fail", max_attempts=1, processes=2, threads=4)
def maybe_fail(event: Event, ctx: Context) -> Any:
    if event.payload.get("fail"):
        raise ValueError(f"child {event.payload['i']} says no")
    if event.payload.get("slow"):
        time.sleep(event.payload["slow"])
    return event.payload["i"]


@task(name="wf-fan", processes=1)
async def fan(event: Event, ctx: AsyncContext) -> Any:
    p = event.payload
    results = await ctx.invoke_many(
        "fan", p.get("task", "wf-noop"), p["payloads"], timeout=p.get("timeout"),
        return_exceptions=True,
    )
    return [{"failed": r.child_id, "type": r.error_type, "message": r.error_message}
            if isinstance(r, ChildFailed) else r for r in results]


@task(name="wf-fan-timeout")
def fan_timeout(event: Event, ctx: Context) -> Any:
    try:
        ctx.invoke_many("fan", "wf-maybe-fail", event.payload["payloads"],
                        timeout=event.payload["timeout"])
    except ChildTimeout as exc:
        return {"timeout": True, "unfinished": exc.unfinished}
    return {"timeout": False}


@task(name="wf-invoke-unknown", max_attempts=1)
def invoke_unknown(event: Event, ctx: Context) -> Any:
    return ctx.invoke("child", "no-such-task", {})


@task(name="wf-approval")
def approval(event: Event, ctx: Context) -> Any:
    p = event.payload
    ctx.step("requested", lambda: effect(p["effects"], "requested"))
    try:
        decision = ctx.wait_for_signal("decision", timeout=p.get("timeout"))
    except SignalTimeout:
        return {"outcome": "timed out"}
    effect(p["effects"], f"decided-{decision['approve']}")
    return {"outcome": "approved" if decision["approve"] else "rejected", "by": decision["by"]}


@task(name="wf-wait-event")
def wait_event(event: Event, ctx: Context) -> Any:
    p = event.payload
    try:
        got = ctx.wait_for_event("paid", "order.paid", match={"order": p["order"]},
                                 timeout=p.get("timeout"))
    except EventTimeout:
        return {"timeout": True}
    return {"paid": got}


@task(name="wf-emitter")
def emitter(event: Event, ctx: Context) -> Any:
    return ctx.emit("emit", "order.created", event.payload)


@task(name="wf-on-created", on="order.created", processes=2, threads=8)
def on_created(event: Event, ctx: Context) -> Any:
    return {"seen": event.payload}


@task(name="wf-on-created-eu", on=["order.created"], filter={"region": "eu"}, threads=8)
def on_created_eu(event: Event, ctx: Context) -> Any:
    return {"eu": event.payload}


@task(name="wf-on-created-gold", on="order.created", filter={"customer.tier": "gold"},
      threads=8)
def on_created_gold(event: Event, ctx: Context) -> Any:
    return {"gold": event.payload}


@task(name="wf-bulk-a", on="bulk.event")
def bulk_a(event: Event, ctx: Context) -> Any:
    return None


@task(name="wf-bulk-b", on="bulk.event")
def bulk_b(event: Event, ctx: Context) -> Any:
    return None


@task(name="wf-bulk-c", on=["bulk.event", "other.event"])
def bulk_c(event: Event, ctx: Context) -> Any:
    return None
