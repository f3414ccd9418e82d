"""Tasks with pydantic payload and result types (run by test_typed.py's workers)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from conductor_worker import BatchContext, Context, Event, task


class Item(BaseModel):
    sku: str
    qty: int = Field(gt=0)


class Order(BaseModel):
    customer: str
    items: list[Item]


class Receipt(BaseModel):
    customer: str
    units: int


@task(name="typed-place-order", max_attempts=3)
def place_order(event: Event[Order], ctx: Context) -> Receipt:
    order = event.payload
    assert isinstance(order, Order), type(order)
    units = ctx.step("count", lambda: sum(i.qty for i in order.items))
    return Receipt(customer=order.customer, units=units)


@task(name="typed-async-order", max_attempts=3)
async def async_order(event: Event[Order], ctx: Any) -> Receipt:
    return Receipt(customer=event.payload.customer, units=len(event.payload.items))


@task(name="typed-list")
def total(event: Event[list[int]], ctx: Context) -> int:
    return sum(event.payload)


@task(name="typed-batch", batch=10, batch_wait=0.3)
def typed_batch(events: list[Event[Item]], ctx: BatchContext) -> list[Any]:
    """Each payload parsed into an Item; a line logged on each item's own execution."""
    ctx.logger.info("a batch of %d", len(events))  # the worker's log only
    for i, event in enumerate(events):
        assert isinstance(event.payload, Item), type(event.payload)
        ctx.logger_for(i).info("sku %s x%d in a batch of %d", event.payload.sku,
                               event.payload.qty, len(events))
    return [{"sku": e.payload.sku, "units": e.payload.qty} for e in events]


@task(name="typed-batch-async", batch=10, batch_wait=0.3)
async def typed_batch_async(events: list[Event[Item]], ctx: BatchContext) -> list[Any]:
    for i, event in enumerate(events):
        ctx.logger_for(i).warning("async sku %s", event.payload.sku)
    return [Receipt(customer=e.payload.sku, units=e.payload.qty) for e in events]
