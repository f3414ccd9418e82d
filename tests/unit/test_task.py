"""conductor_worker.task: @task option checks, the registry, and pool-safe pickling."""

from __future__ import annotations

import itertools
import math
import pickle
from typing import Any

import pytest

from conductor_worker import Task, TaskDefinitionError, task
from conductor_worker.task import check_registrable, registered
from tests.unit import sample_tasks

_counter = itertools.count()


def unique(prefix: str) -> str:
    """@task registers globally by name: give every test its own."""
    return f"unit-{prefix}-{next(_counter)}"


def handler(event: Any, ctx: Any) -> Any:
    return event


@pytest.mark.parametrize(
    "options, option_name",
    [
        ({"processes": 0}, "processes"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"concurrency": -1}, "concurrency"),
        ({"prefetch": -1}, "prefetch"),
        ({"jitter": 2}, "jitter"),
        ({"jitter": -0.1}, "jitter"),
        ({"backoff": 10.0, "max_backoff": 5.0}, "backoff"),
        ({"backoff": 0.0}, "backoff"),
        ({"backoff_multiplier": 0.5}, "backoff_multiplier"),
        ({"window": ("25:00", "06:00")}, "window start"),
        ({"window": ("22:00", "6:00")}, "window end"),
        ({"window": ("09:00", "09:00")}, "window"),
        ({"window": ("09:00",)}, "window"),
        ({"timezone": "Nowhere/Zone"}, "timezone"),
        ({"timezone": ""}, "timezone"),
        ({"min_processes": -1}, "min_processes"),
        ({"processes": 2, "min_processes": 3}, "min_processes"),
        ({"pool": ""}, "pool"),
        ({"pool": "has space"}, "pool"),
        ({"pool": 3}, "pool"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": "soon"}, "timeout"),
        ({"on_failure": "has space"}, "on_failure"),
        ({"on_failure": 7}, "on_failure"),
        ({"batch": -1}, "batch"),
        ({"batch": 1001}, "batch"),
        ({"batch": 2.5}, "batch"),
        ({"batch": True}, "batch"),
        ({"batch": 10, "batch_wait": 61}, "batch_wait"),
        ({"batch": 10, "batch_wait": "later"}, "batch_wait"),
    ],
)
def test_bad_option_raises_naming_option(options: dict[str, Any], option_name: str) -> None:
    name = unique("bad")
    with pytest.raises(TaskDefinitionError) as info:
        task(name=name, **options)(handler)
    assert f"task {name!r}: {option_name}: " in str(info.value)
    assert name not in registered()  # nothing half-registered


def test_bad_name_raises_naming_option() -> None:
    with pytest.raises(TaskDefinitionError, match=r"^task 'has space': name: "):
        task(name="has space")(handler)
    assert "has space" not in registered()


def test_name_too_long_rejected() -> None:
    with pytest.raises(TaskDefinitionError, match=": name: "):
        task(name="x" * 201)(handler)


def test_zone_directory_name_rejected() -> None:
    with pytest.raises(TaskDefinitionError, match="timezone"):
        task(name=unique("tzdir"), timezone="America")(handler)


def test_nan_backoff_multiplier_rejected() -> None:
    with pytest.raises(TaskDefinitionError, match="backoff_multiplier"):
        task(name=unique("nan"), backoff_multiplier=math.nan)(handler)


def test_valid_task_is_registered_with_options() -> None:
    name = unique("ok")
    defined = task(
        name=name,
        processes=3,
        max_attempts=5,
        window=["22:00", "06:00"],  # a list is accepted and stored as a tuple
        timezone="Europe/Berlin",
        non_retryable=[KeyError, "MyError"],
    )(handler)
    assert isinstance(defined, Task)
    assert registered()[name] is defined
    assert defined.name == name
    assert defined.options.window == ("22:00", "06:00")
    assert defined.options.non_retryable == ("KeyError", "MyError")
    assert defined.options.prefetch is None  # adaptive (conductor_worker/window.py)
    assert defined.options.capacity == 6  # until measured: one lease per slot and as many again
    assert defined.options.capacity == 6
    assert defined({"a": 1}, None) == {"a": 1}  # direct call runs the handler in-process


def test_bare_decorator_uses_function_name() -> None:
    assert sample_tasks.plain.name == "unit-sample-plain"
    assert registered()["unit-sample-async"].is_async is True
    assert sample_tasks.plain.is_async is False


def test_task_defined_in_function_is_not_registrable() -> None:
    @task(name=unique("local"))
    def local_task(event: Any, ctx: Any) -> None:
        return None

    assert "<locals>" in local_task.__qualname__
    with pytest.raises(TaskDefinitionError, match="defined inside a function"):
        check_registrable(local_task)


@pytest.mark.parametrize("name", ["plain", "asynchronous", "shadowed"])
def test_module_level_task_pickles_to_same_object(name: str) -> None:
    original = getattr(sample_tasks, name)
    assert pickle.loads(pickle.dumps(original)) is original
    check_registrable(original)  # does not raise


def test_shadowed_task_is_not_registrable() -> None:
    first = sample_tasks.SHADOWED_FIRST
    assert first is not sample_tasks.shadowed
    with pytest.raises(TaskDefinitionError, match="does not name this task"):
        check_registrable(first)


def test_window_with_trailing_newline_rejected() -> None:
    with pytest.raises(TaskDefinitionError, match="window start"):
        task(name=unique("newline"), window=("09:00\n", "17:00"))(handler)


def test_dead_letter_task_may_not_be_the_task_itself() -> None:
    name = unique("self-grave")
    with pytest.raises(TaskDefinitionError, match="on_failure: names the task itself"):
        task(name=name, on_failure=name)(handler)


def test_flow_options_and_the_capacity_they_give() -> None:
    grave = task(name=unique("grave"))(handler)
    timed = task(name=unique("timed"), timeout="2m", on_failure=grave, processes=2)(handler)
    assert (timed.options.timeout, timed.options.on_failure) == (120.0, grave.name)
    assert timed.options.capacity == 4 and timed.options.adaptive
    batched = task(name=unique("batched"), batch=50, batch_wait="2s", processes=2)(handler)
    assert (batched.options.batch, batched.options.batch_wait) == (50, 2.0)
    assert batched.options.capacity == 150  # a batch per process, and one gathering
    assert not batched.options.adaptive
