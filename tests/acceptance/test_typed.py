"""Typed tasks: payloads validated and parsed in the pool process, results parsed back."""

from __future__ import annotations

from typing import Any

import pytest

from conductor_worker import Client, Event, InvalidArgument, task
from conductor_worker.errors import TaskDefinitionError
from conductor_worker.task import check_registrable
from tests.acceptance.tasks import noop
from tests.acceptance.typed_tasks import (
    Item,
    Order,
    Receipt,
    async_order,
    place_order,
    total,
    typed_batch,
    typed_batch_async,
)
from tests.conftest import wait_for

pytestmark = pytest.mark.acceptance

MODULE = "tests.acceptance.typed_tasks"


@pytest.fixture
def client(address: str) -> Any:
    with Client(address) as c:
        yield c


def test_task_object_payload_model_and_parsed_result(address, spawn_worker, client):
    spawn_worker(address, MODULE)
    order = Order(customer="ada", items=[Item(sku="a", qty=2), Item(sku="b", qty=3)])
    execution_id = client.invoke(place_order, order)
    assert client.get(execution_id).payload == order.model_dump()
    done = client.wait(execution_id, timeout=60, result_type=place_order)
    assert done.result == Receipt(customer="ada", units=5)
    assert client.get(execution_id, result_type=Receipt).result == Receipt(customer="ada", units=5)
    assert client.wait(execution_id, timeout=60).result == {"customer": "ada", "units": 5}
    # a plain dict payload is validated the same way; async handlers too
    plain = client.invoke(
        "typed-async-order", {"customer": "bob", "items": [{"sku": "x", "qty": 1}]}
    )
    assert client.wait(plain, timeout=60, result_type=async_order).result == Receipt(
        customer="bob", units=1
    )
    assert client.wait(client.invoke(total, [1, 2, 3]), timeout=60, result_type=total).result == 6


@pytest.mark.parametrize("task_name", ["typed-place-order", "typed-async-order"])
def test_invalid_payload_fails_at_once_naming_the_fields(address, spawn_worker, client, task_name):
    spawn_worker(address, MODULE)
    bad = {"customer": "ada", "items": [{"sku": "a", "qty": 0}, {"qty": "many"}]}
    failed = client.wait(client.invoke(task_name, bad), timeout=60)
    assert (failed.state, failed.attempt) == ("failed", 1)  # not retried (max_attempts=3)
    assert failed.error is not None and failed.error.type == "InvalidPayload"
    message = failed.error.message
    assert "payload.items.0.qty: Input should be greater than 0" in message
    assert "payload.items.1.sku: Field required" in message
    assert "payload.items.1.qty: Input should be a valid integer" in message
    assert "Traceback" not in message


@pytest.mark.parametrize("task_name", ["typed-batch", "typed-batch-async"])
def test_a_typed_batch_parses_each_item_and_a_bad_payload_fails_alone(
    address, spawn_worker, client, task_name
):
    worker = spawn_worker(address, MODULE)
    payloads: list[Any] = [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 0}, {"sku": "c", "qty": 3},
                           Item(sku="d", qty=4), {"qty": "many"}]
    ids = client.invoke_batch(task_name, payloads)
    done = [client.wait(i, timeout=60) for i in ids]
    assert [(e.state, e.attempt) for e in done] == [
        ("succeeded", 1), ("failed", 1), ("succeeded", 1), ("succeeded", 1), ("failed", 1)]
    assert [done[i].result["units"] for i in (0, 2, 3)] == [1, 3, 4]
    for bad, problem in ((1, "payload.qty: Input should be greater than 0"),
                         (4, "payload.sku: Field required")):
        error = done[bad].error
        assert error is not None and error.type == "InvalidPayload", error
        assert problem in error.message and "Traceback" not in error.message
    # each item's line is recorded on its own execution, none on the items that failed
    word = "sku" if task_name == "typed-batch" else "async sku"
    for i, sku in ((0, "a"), (2, "c"), (3, "d")):
        lines = wait_for(lambda i=i: client.logs(ids[i]) or None, what=f"item {i}'s line")
        assert len(lines) == 1 and lines[0].message.startswith(f"{word} {sku}"), lines
        assert lines[0].attempt == 1
    assert client.logs(ids[1]) == [] and client.logs(ids[4]) == []
    if task_name == "typed-batch":
        assert "a batch of" in worker.output(), "ctx.logger goes to the worker's log"


def test_result_type_of_a_task_without_annotation_is_refused(address, spawn_worker, client):
    spawn_worker(address)
    execution_id = client.invoke(noop, 1)
    assert client.wait(execution_id, timeout=60).result == 1
    assert noop.result_type is None  # annotated Any
    with pytest.raises(InvalidArgument, match="result_type: task 'noop' has no return"):
        client.wait(execution_id, timeout=60, result_type=noop)


class Opaque:
    """Not something pydantic can validate."""


@task(name="typed-opaque")
def opaque(event: Event[Opaque], ctx: Any) -> None:
    return None


def test_annotations_are_read_from_the_handler():
    assert place_order.payload_type is Order and place_order.result_type is Receipt
    assert total.payload_type == list[int] and total.result_type is int
    assert noop.payload_type is None and opaque.result_type is None
    assert typed_batch.payload_type is Item and typed_batch_async.payload_type is Item


def test_a_type_pydantic_cannot_validate_fails_registration():
    with pytest.raises(TaskDefinitionError, match=r"typed-opaque.*pydantic cannot validate"):
        check_registrable(opaque)
    check_registrable(place_order)
