"""Reading a handler's Event[X] and return annotations (no pydantic needed to read them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conductor_worker import Event, task
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
