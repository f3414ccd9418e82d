"""Conductor's Python SDK: define tasks, run workers, invoke tasks.

    from conductor_worker import task, Client
"""

from .client import Client, ErrorInfo, Execution, Schedule
from .context import AsyncContext, Context, Event
from .errors import (
    ConductorError,
    ExecutionNotFound,
    FailedPrecondition,
    InvalidArgument,
    NonRetryableError,
    ScheduleNotFound,
    TaskDefinitionError,
    TaskNotFound,
    Unauthenticated,
)
from .history import Attempt, BulkResult, TaskInfo
from .runtime import Worker
from .task import Task, task

__all__ = [
    "AsyncContext",
    "Attempt",
    "BulkResult",
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
    "Schedule",
    "ScheduleNotFound",
    "Task",
    "TaskDefinitionError",
    "TaskInfo",
    "TaskNotFound",
    "Unauthenticated",
    "Worker",
    "task",
]
