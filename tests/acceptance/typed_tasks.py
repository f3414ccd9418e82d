"""Tasks with pydantic payload and result types (run by test_typed.py's workers)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from conductor_worker import Context, Event, task


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
