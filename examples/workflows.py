"""The examples of docs/workflows.md: an order saga (a child per step, compensation on
failure) and an approval flow (a human's signal). Run them with

    conductor dev examples.workflows
    conductor invoke order-saga --payload '{"order": 1, "amount": 30}' --wait
    conductor invoke order-saga --payload '{"order": 2, "amount": 30, "ship_to": "moon"}' --wait
    conductor invoke expense-approval --payload '{"expense": 7, "amount": 900}'
    conductor signal EXECUTION_ID decision --payload '{"approve": true, "by": "ana"}'
"""

from __future__ import annotations

from typing import Any

from conductor_worker import ChildFailed, Context, Event, NonRetryableError, SignalTimeout, task

# -- an order saga -------------------------------------------------------------------------


@task(name="order-saga")
def order_saga(event: Event, ctx: Context) -> dict[str, Any]:
    """Reserve stock, charge the card, ship: each a child execution, run once per order
    however often this parent is resumed or retried. When shipping fails for good, the
    charge and the reservation are undone (compensating children), then the order is
    reported as cancelled."""
    order = event.payload
    reservation = ctx.invoke("reserve", "reserve-stock", order)
    charge = ctx.invoke("charge", "charge-card", order)
    try:
        shipment = ctx.invoke("ship", "ship-order", order, timeout=3600)
    except ChildFailed as failure:
        ctx.invoke("refund", "refund-card", charge)
        ctx.invoke("release", "release-stock", reservation)
        return {"order": order["order"], "status": "cancelled", "why": failure.error_message}
    ctx.emit("announce", "order.shipped", {"order": order["order"], **shipment})
    return {"order": order["order"], "status": "shipped", **shipment}


@task(name="reserve-stock")
def reserve_stock(event: Event, ctx: Context) -> dict[str, Any]:
    return {"reservation": f"r-{event.payload['order']}"}


@task(name="charge-card")
def charge_card(event: Event, ctx: Context) -> dict[str, Any]:
    return {"charge": f"c-{event.payload['order']}", "amount": event.payload["amount"]}


@task(name="ship-order", max_attempts=2, backoff=0.1)
def ship_order(event: Event, ctx: Context) -> dict[str, Any]:
    if event.payload.get("ship_to") == "moon":
        raise NonRetryableError("no carrier ships to the moon")
    return {"tracking": f"t-{event.payload['order']}"}


@task(name="refund-card")
def refund_card(event: Event, ctx: Context) -> dict[str, Any]:
    return {"refunded": event.payload["charge"]}


@task(name="release-stock")
def release_stock(event: Event, ctx: Context) -> dict[str, Any]:
    return {"released": event.payload["reservation"]}


@task(name="notify-shipped", on="order.shipped")
def notify_shipped(event: Event, ctx: Context) -> str:
    """Runs once per order.shipped event (emitted by the saga, or by anyone)."""
    return f"mail sent for order {event.payload['order']}"


# -- an approval flow ----------------------------------------------------------------------


@task(name="expense-approval")
def expense_approval(event: Event, ctx: Context) -> dict[str, Any]:
    """Ask a human, wait (released, for up to a week) for their decision, act on it."""
    expense = event.payload
    ctx.step("ask", lambda: {"asked": f"approve expense {expense['expense']}?"})
    try:
        decision = ctx.wait_for_signal("decision", timeout=7 * 24 * 3600)
    except SignalTimeout:
        return {"expense": expense["expense"], "status": "expired"}
    if not decision["approve"]:
        return {"expense": expense["expense"], "status": "rejected", "by": decision["by"]}
    paid = ctx.invoke("pay", "pay-expense", expense)
    return {"expense": expense["expense"], "status": "paid", "by": decision["by"], **paid}


@task(name="pay-expense")
def pay_expense(event: Event, ctx: Context) -> dict[str, Any]:
    return {"paid": event.payload["amount"]}
