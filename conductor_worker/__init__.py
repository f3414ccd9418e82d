"""Conductor's Python SDK: define tasks, run workers, invoke tasks.

    from conductor_worker import task, Client
"""

from .client import Client, ErrorInfo, Execution, Schedule
from .context import AsyncContext, Context, Event
from .errors import (
    ChildCancelled,
    ChildFailed,
    ChildTimeout,
    ConductorError,
    EventTimeout,
    ExecutionNotFound,
    FailedPrecondition,
    InvalidArgument,
    NonRetryableError,
    ScheduleNotFound,
    SignalTimeout,
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
    "NonRetryableError",
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
