"""Conductor's Python SDK: define tasks, run workers, invoke tasks.

    from conductor_worker import task, Client   # AsyncClient for asyncio code
"""

from .async_client import AsyncClient
from .client import Client
from .context import AsyncContext, Context, Event
from .errors import (
    ConductorError,
    ExecutionNotFound,
    FailedPrecondition,
    InvalidArgument,
    InvalidPayload,
    NonRetryableError,
    ScheduleNotFound,
    TaskDefinitionError,
    TaskNotFound,
    Unauthenticated,
)
from .records import ErrorInfo, Execution, Schedule
from .runtime import Worker
from .task import Task, task

__all__ = [
    "AsyncClient",
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
    "InvalidPayload",
    "NonRetryableError",
    "Schedule",
    "ScheduleNotFound",
    "Task",
    "TaskDefinitionError",
    "TaskNotFound",
    "Unauthenticated",
    "Worker",
    "task",
]
