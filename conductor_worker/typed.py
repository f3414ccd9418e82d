"""Typed payloads and results (pydantic, optional: `pip install 'conductor-tasks[pydantic]'`).

A handler annotated `def f(event: Event[Order], ctx) -> Receipt` gets `event.payload`
validated and parsed into `Order` in its pool process before it runs; a payload that does not
fit fails the execution at once (InvalidPayload, not retried) with the fields that are wrong.
A batch handler annotated `def f(events: list[Event[Order]], ctx)` gets each item's payload
parsed the same way; an item that does not fit fails alone and is left out of the list.
A pydantic model returned (or passed as a payload or step result) is stored as its JSON form,
and `Client.wait(id, result_type=Receipt)` (or `result_type=f`) parses the result back.

pydantic is imported only when a task or a call uses a type; JSON encoding looks for pydantic
models only once pydantic has been imported by someone, so untyped code pays nothing.
"""

from __future__ import annotations

import collections.abc
import inspect
import sys
import typing
from collections.abc import Callable
from typing import Any

from .errors import InvalidPayload, TaskDefinitionError

#: the field paths and messages shown in a validation error, at most
MAX_PROBLEMS = 5


def jsonable(value: Any) -> Any:
    """`default=` hook for json.dumps: pydantic models as their JSON form."""
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _adapter(kind: Any) -> Any:
    try:
        import pydantic
    except ImportError:
        raise TaskDefinitionError(
            f"parsing into {kind!r} needs pydantic: pip install 'conductor-tasks[pydantic]'"
        ) from None
    return pydantic.TypeAdapter(kind)


def check_type(kind: Any, what: str) -> None:
    """TaskDefinitionError unless pydantic is installed and can validate `kind`."""
    try:
        _adapter(kind)
    except TaskDefinitionError as exc:
        raise TaskDefinitionError(f"{what}: {exc}") from None
    except Exception as exc:  # pydantic's own errors for a type it cannot handle
        raise TaskDefinitionError(f"{what}: pydantic cannot validate {kind!r}: {exc}") from None


def parse(kind: Any, value: Any) -> Any:
    """`value` (decoded JSON) validated and parsed into `kind`; pydantic's ValidationError
    when it does not fit."""
    return _adapter(kind).validate_python(value)


def parse_payload(kind: Any, payload: Any) -> Any:
    """The payload parsed into `kind`; InvalidPayload naming each wrong field."""
    import pydantic

    try:
        return parse(kind, payload)
    except pydantic.ValidationError as exc:
        raise InvalidPayload(describe(exc, "payload")) from None


def describe(exc: Any, root: str) -> str:
    """A ValidationError in one line: `payload.items.0.qty: Input should be ...; ...`."""
    problems = exc.errors(include_url=False)
    parts = [
        ".".join([root, *(str(p) for p in problem["loc"])]) + ": " + problem["msg"]
        for problem in problems[:MAX_PROBLEMS]
    ]
    more = len(problems) - MAX_PROBLEMS
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def _hint(fn: Callable[..., Any], name: str) -> Any | None:
    """The annotation of one parameter (or "return") of `fn`, resolved in the function's
    module; None when it has none or it cannot be resolved (yet). One at a time, so that an
    annotation of another parameter that names something imported only for type checkers
    does not hide this one."""
    raw = inspect.get_annotations(fn).get(name)
    if not isinstance(raw, str):
        return raw
    try:
        return eval(raw, getattr(fn, "__globals__", {}))  # what typing.get_type_hints does
    except Exception:
        return None


def payload_type(fn: Callable[..., Any], event_class: type) -> Any | None:
    """X for a handler whose first parameter is annotated `Event[X]` (X not Any)."""
    code = getattr(fn, "__code__", None)
    if code is None or code.co_argcount == 0:
        return None
    hint = _hint(fn, code.co_varnames[0])
    if typing.get_origin(hint) is not event_class:
        return None
    (kind,) = typing.get_args(hint)
    return None if kind is Any else kind


#: the list types a batch handler's first parameter may be annotated with
_LISTS = (list, collections.abc.Sequence, collections.abc.Iterable)


def batch_payload_type(fn: Callable[..., Any], event_class: type) -> Any | None:
    """X for a batch handler whose first parameter is annotated `list[Event[X]]` (or
    `Sequence[Event[X]]`; X not Any)."""
    code = getattr(fn, "__code__", None)
    if code is None or code.co_argcount == 0:
        return None
    hint = _hint(fn, code.co_varnames[0])
    args = typing.get_args(hint)
    if typing.get_origin(hint) not in _LISTS or len(args) != 1:
        return None
    (item,) = args
    if typing.get_origin(item) is not event_class:
        return None
    (kind,) = typing.get_args(item)
    return None if kind is Any else kind


def result_type(fn: Callable[..., Any]) -> Any | None:
    """The handler's return annotation (None when it has none, or Any); the awaited type of
    an `async def` handler is its annotation too."""
    kind = _hint(fn, "return")
    return None if kind is None or kind is Any or kind is type(None) else kind
