"""Conductor's Python SDK: define tasks, run workers, invoke tasks.

    from conductor_worker import task, Client
"""

from .client import Client, ErrorInfo, Execution
from .context import AsyncContext, Context, Event
from .errors import (
    ConductorError,
    ExecutionNotFound,
    FailedPrecondition,
    InvalidArgument,
    NonRetryableError,
    TaskDefinitionError,
    TaskNotFound,
)
from .runtime import Worker
from .task import Task, task

__all__ = [
    "AsyncContext",
    "Client",
    "ConductorError",
    "Context",
    "ErrorInfo",
    "Event",
    "Execution",
    "ExecutionNotFound",
    "FailedPrecondition",
    "InvalidArgument",
    "NonRetryableError",
    "Task",
    "TaskDefinitionError",
    "TaskNotFound",
    "Worker",
    "task",
]
