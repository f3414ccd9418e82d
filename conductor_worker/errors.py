"""Errors the SDK raises."""

from __future__ import annotations


class ConductorError(Exception):
    """Base of the SDK's errors."""


class TaskDefinitionError(ConductorError):
    """A task cannot be registered (bad options, not importable, not picklable)."""


class TaskNotFound(ConductorError):
    """The coordinator knows no task by that name (gRPC NOT_FOUND)."""


class ExecutionNotFound(ConductorError):
    """No execution has that id (gRPC NOT_FOUND)."""


class ScheduleNotFound(ConductorError):
    """The task has no schedule by that name (gRPC NOT_FOUND)."""


class InvalidArgument(ConductorError, ValueError):
    """The coordinator rejected the input; the message names the field (INVALID_ARGUMENT)."""


class FailedPrecondition(ConductorError):
    """The execution's state does not allow the call (FAILED_PRECONDITION)."""


class Unauthenticated(ConductorError):
    """The coordinator wants a (different) bearer token (gRPC UNAUTHENTICATED)."""


class NonRetryableError(Exception):
    """Raise (or subclass) in a handler to fail the execution without further attempts."""


class InvalidResult(NonRetryableError, TypeError):
    """The handler's return value cannot be stored (not JSON-serialisable, or a string with a
    NUL character). Not retried: another attempt would return the same kind of value."""


class InvalidPayload(NonRetryableError, ValueError):
    """The payload does not fit the handler's `Event[Model]` annotation; the message names
    the fields that are wrong. Not retried: the payload will not change."""


class LeaseLost(BaseException):
    """Raised inside a handler when its lease was taken away; the run is abandoned.

    A BaseException so that `except Exception` in user code does not swallow it.
    """


class Interrupted(BaseException):
    """Raised at a step or checkpoint to release the execution (shutdown, window, sleep,
    cancellation). Not an error: the worker turns it into a release. Do not catch it."""

    def __init__(self, reason: str, run_at: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.run_at = run_at
