"""conductor_worker.pool.pool_groups and PoolSettings: which tasks share a pool, and the
pool lifecycle settings from arguments and the environment."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from conductor_worker import TaskDefinitionError, task
from conductor_worker.pool import pool_groups
from conductor_worker.settings import DEFAULT_IDLE_TIMEOUT, PoolSettings

_counter = itertools.count()


def unique(prefix: str) -> str:
    return f"unit-groups-{prefix}-{next(_counter)}"


def plain(event: Any, ctx: Any) -> Any:
    return event


async def asynchronous(event: Any, ctx: Any) -> Any:
    return event


def test_tasks_without_a_pool_get_their_own_and_shared_ones_share() -> None:
    alone = task(name=unique("alone"))(plain)
    a = task(name=unique("a"), pool="io", processes=2)(plain)
    b = task(name=unique("b"), pool="io", threads=4)(plain)
    groups = pool_groups([alone, a, b])
    assert groups == {alone.name: [alone], "io": [a, b]}


def test_a_pool_named_like_a_task_with_its_own_pool_is_refused() -> None:
    own = task(name=unique("own"))(plain)
    sharing = task(name=unique("sharing"), pool=own.name)(plain)
    with pytest.raises(TaskDefinitionError, match=rf"pool '{own.name}' is also the name"):
        pool_groups([own, sharing])


def test_a_pool_mixing_async_and_plain_handlers_is_refused_naming_both() -> None:
    a = task(name=unique("plain"), pool="mixed")(plain)
    b = task(name=unique("async"), pool="mixed")(asynchronous)
    with pytest.raises(TaskDefinitionError, match="pool 'mixed' mixes async def") as info:
        pool_groups([a, b])
    assert a.name in str(info.value) and b.name in str(info.value)


def test_settings_defaults() -> None:
    settings = PoolSettings.resolve(env={})
    assert settings == PoolSettings("forkserver", DEFAULT_IDLE_TIMEOUT)


def test_settings_from_the_environment_and_arguments_winning() -> None:
    env = {"CONDUCTOR_START_METHOD": "spawn", "CONDUCTOR_POOL_IDLE_TIMEOUT": "2.5"}
    assert PoolSettings.resolve(env=env) == PoolSettings("spawn", 2.5)
    assert PoolSettings.resolve(start_method="forkserver", idle_timeout=0, env=env) == (
        PoolSettings("forkserver", 0))


@pytest.mark.parametrize(
    "env, named",
    [
        ({"CONDUCTOR_POOL_IDLE_TIMEOUT": "soon"}, "CONDUCTOR_POOL_IDLE_TIMEOUT"),
        ({"CONDUCTOR_POOL_IDLE_TIMEOUT": "-1"}, "pool idle timeout"),
        ({"CONDUCTOR_POOL_IDLE_TIMEOUT": "nan"}, "pool idle timeout"),
        ({"CONDUCTOR_START_METHOD": "fork"}, "start method"),
    ],
)
def test_bad_settings_name_what_is_wrong(env: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        PoolSettings.resolve(env=env)
