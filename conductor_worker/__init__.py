"""Conductor's Python SDK: define tasks, run workers, invoke tasks.

    from conductor_worker import task, Client   # AsyncClient for asyncio code
"""

from .async_client import AsyncClient
from .batching import BatchContext
from .client import Client
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
    InvalidPayload,
    NonRetryableError,
    RateLimited,
    ResultTooLarge,
    ScheduleNotFound,
    SignalTimeout,
    TaskDefinitionError,
    TaskNotFound,
    Unauthenticated,
)
from .history import Attempt, BulkResult, ErrorInfo, TaskInfo
from .records import Execution, Schedule
from .runtime import Worker
from .task import Task, task

__all__ = [
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
