"""conductor_worker's public names are pinned: changing them is a deliberate API change."""

from __future__ import annotations

import importlib

import pytest

import conductor_worker

PUBLIC = [
    "AsyncClient",
    "AsyncContext",
    "Attempt",
    "BatchContext",
    "BulkResult",
    "ChildCancelled",
    "ChildFailed",
    "ChildTimeout",
    "Client",
    "ConductorError",
    "Context",
    "ErrorInfo",
    "Event",
    "EventTimeout",
    "Execution",
    "ExecutionNotFound",
    "FailedPrecondition",
    "InvalidArgument",
    "InvalidPayload",
    "NonRetryableError",
    "RateLimited",
    "ResultTooLarge",
    "Schedule",
    "ScheduleNotFound",
    "SignalTimeout",
    "Task",
    "TaskDefinitionError",
    "TaskInfo",
    "TaskNotFound",
    "Unauthenticated",
    "Worker",
    "task",
]


def test_all_is_pinned_and_sorted() -> None:
    assert conductor_worker.__all__ == PUBLIC
    assert sorted(PUBLIC) == PUBLIC
    assert len(set(PUBLIC)) == len(PUBLIC)


@pytest.mark.parametrize("name", PUBLIC)
def test_public_name_is_importable(name: str) -> None:
    module = importlib.import_module("conductor_worker")
    assert getattr(module, name) is not None
    namespace: dict[str, object] = {}
    exec(f"from conductor_worker import {name}", namespace)
    assert namespace[name] is getattr(conductor_worker, name)


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from conductor_worker import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == PUBLIC


def test_sdk_errors_have_a_common_base() -> None:
    for name in (
        "ExecutionNotFound",
        "FailedPrecondition",
        "InvalidArgument",
        "TaskDefinitionError",
        "TaskNotFound",
    "Unauthenticated",
    ):
        assert issubclass(getattr(conductor_worker, name), conductor_worker.ConductorError)
