"""Reading a handler's Event[X] and return annotations (no pydantic needed to read them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from conductor_worker import Event, TaskDefinitionError, task
from conductor_worker.task import check_registrable
from conductor_worker.typed import describe

if TYPE_CHECKING:
    from collections.abc import Sequence  # never defined at run time


@task(name="typed-unit-hidden-ctx")
def hidden_ctx(event: Event[list[int]], ctx: Sequence[int]) -> dict[str, int]:
    return {}


@task(name="typed-unit-untyped")
def untyped(event, ctx):  # type: ignore[no-untyped-def]
    return None


@task(name="typed-unit-any")
def any_payload(event: Event[Any], ctx: Any) -> None:
    return None


def test_an_unresolvable_annotation_of_ctx_does_not_hide_the_payload_type() -> None:
    assert hidden_ctx.payload_type == list[int]
    assert hidden_ctx.result_type == dict[str, int]


def test_no_type_means_no_validation() -> None:
    assert untyped.payload_type is None and untyped.result_type is None
    assert any_payload.payload_type is None and any_payload.result_type is None


class FakeValidationError:
    def errors(self, include_url: bool = False) -> list[dict[str, Any]]:
        return [{"loc": ("items", i, "qty"), "msg": "bad"} for i in range(7)]


def test_validation_errors_name_the_fields_and_stay_short() -> None:
    text = describe(FakeValidationError(), "payload")
    assert text.startswith("payload.items.0.qty: bad; payload.items.1.qty: bad")
    assert text.endswith("and 2 more") and "items.5" not in text


@task(name="typed-unit-batch-as-one", batch=5)
def batch_as_one(event: Event[dict[str, int]], ctx: Any) -> list[Any]:
    return []


@task(name="typed-unit-one-as-batch")
def one_as_batch(events: list[Event[dict[str, int]]], ctx: Any) -> Any:
    return None


@task(name="typed-unit-batch", batch=5)
def typed_batch(events: list[Event[dict[str, int]]], ctx: Any) -> list[Any]:
    return []


def test_a_batch_handler_is_typed_by_a_list_of_events() -> None:
    assert typed_batch.payload_type == dict[str, int]
    with pytest.raises(TaskDefinitionError, match=r"'typed-unit-batch-as-one': a batch handler"
                       r" takes a list of events: annotate its first parameter list\[Event"):
        check_registrable(batch_as_one)
    with pytest.raises(TaskDefinitionError, match=r"'typed-unit-one-as-batch': the handler takes"
                       r" one event"):
        check_registrable(one_as_batch)
