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


class RateLimited(Exception):
    """Raise in a handler when a service it calls says "too many requests": the execution is
    released without counting an attempt, and the task's rate limit (its key's, for a task
    with `key=`) is paused for every worker until `retry_after` seconds from now; then it
    runs again. Works on tasks without a rate_limit too (docs/flow-control.md)."""

    def __init__(self, retry_after: float = 1.0) -> None:
        if not isinstance(retry_after, int | float) or not 0 <= retry_after <= 86400 \
                or retry_after != retry_after:
            raise ValueError(f"RateLimited: retry_after must be 0..86400 seconds, got "
                             f"{retry_after!r}")
        super().__init__(f"rate limited: retry after {retry_after} s")
        self.retry_after = float(retry_after)


class WorkflowError(NonRetryableError):
    """A workflow wait ended badly. Not retried: the outcome is recorded as a step, so a
    retry would meet the same one (catch it to compensate)."""


class ChildFailed(WorkflowError):
    """A child execution (ctx.invoke) failed for good, or was cancelled."""

    def __init__(self, child_id: str, state: str, error_type: str, message: str) -> None:
        super().__init__(f"child {child_id} {state}: {error_type}: {message}")
        self.child_id = child_id
        self.state = state
        self.error_type = error_type
        self.error_message = message


class ChildCancelled(ChildFailed):
    """A child execution was cancelled."""


class ChildTimeout(WorkflowError):
    """Children did not finish within the timeout; the unfinished ones were cancelled."""

    def __init__(self, child_ids: list[str], unfinished: list[str]) -> None:
        super().__init__(
            f"{len(unfinished)} of {len(child_ids)} children not finished in time"
            f" (cancelled): {', '.join(unfinished[:10])}"
        )
        self.child_ids = child_ids
        self.unfinished = unfinished


class EventTimeout(WorkflowError):
    """ctx.wait_for_event: no matching event within the timeout."""


class SignalTimeout(WorkflowError):
    """ctx.wait_for_signal: no signal within the timeout."""


class ResultTooLarge(WorkflowError):
    """A wait's outcome (the children's results of ctx.invoke/invoke_many, an event's or a
    signal's payload) would take the execution's recorded steps past the coordinator's
    --max-steps-bytes, so it was recorded as this error instead (the lease of a run carries
    every step). The children keep their results (Client.get / list(parent_id=...))."""

    def __init__(self, step: str, size: int, steps_bytes: int, limit: int) -> None:
        super().__init__(
            f"step {step!r}: the wait's outcome is {size} bytes; with the {steps_bytes} bytes"
            f" of the execution's other steps it would pass the limit of {limit} bytes"
            f" (--max-steps-bytes)"
        )
        self.step = step
        self.size = size
        self.steps_bytes = steps_bytes
        self.limit = limit
