"""One call of the client API as the drivers (Client, AsyncClient) make it: the `Call` an
operation yields, its tries and retries on UNAVAILABLE, the SDK's error for a failed call,
and how a driver resumes an operation with the answer."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from .errors import (
    ConductorError,
    ExecutionNotFound,
    FailedPrecondition,
    InvalidArgument,
    ScheduleNotFound,
    TaskNotFound,
    Unauthenticated,
)
from .retrying import Retrying, status_code, unavailable

R = TypeVar("R")


@dataclass(frozen=True)
class Call:
    """One RPC for the driver to make: `ConductorService.<method>(request)`."""

    method: str
    request: Any
    #: repeat on UNAVAILABLE while the budget lasts (safe only for idempotent calls)
    retry: bool = False
    #: seconds for the call and its retries; None: the client's timeout
    budget: float | None = None
    #: deadline of each try; None: whatever is left of the budget
    per_try: float | None = None


#: an operation: yields Calls, is sent their responses, returns its result
Operation = Generator[Call, Any, R]


def translate(exc: grpc.RpcError) -> Exception:
    """The SDK's error for a failed call (the RpcError itself for codes it has none for)."""
    code = status_code(exc)
    details = exc.details() if code is not None else str(exc)
    if code == grpc.StatusCode.NOT_FOUND:
        text = details or ""
        if "no task named" in text:
            return TaskNotFound(text)
        if "no schedule" in text:
            return ScheduleNotFound(text)
        return ExecutionNotFound(text)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument(details)
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return FailedPrecondition(details)
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return Unauthenticated(details)
    return exc


#: what a call can fail with, once translated: thrown into the operation that made it
CallError = (ConductorError, grpc.RpcError)


def resume(op: Generator[Any, Any, Any], reply: Any, error: BaseException | None) -> Any:
    """Resume an operation with its last call's reply (or error): its next Call or item.
    StopIteration (with the operation's result) once it is done."""
    return op.throw(error) if error is not None else op.send(reply)


def method_signature(op: Callable[..., Any]) -> inspect.Signature:
    """The operation's signature with `self` in front: how help() shows a client method."""
    signature = inspect.signature(op)
    this = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    return signature.replace(parameters=[this, *signature.parameters.values()])


class Tries:
    """The tries of one call: each one's timeout, and the pause after a failed one."""

    def __init__(self, call: Call, client_timeout: float) -> None:
        self.call = call
        self._budget = Retrying(time.monotonic() + (call.budget or client_timeout))

    def timeout(self) -> float:
        return self.call.per_try or self._budget.left()

    def pause_after(self, exc: grpc.RpcError) -> float:
        """Seconds to wait before trying again (on UNAVAILABLE, while the budget lasts, for a
        call that may be repeated); otherwise raises the SDK's error for `exc`."""
        pause = self._budget.next_pause() if self.call.retry and unavailable(exc) else None
        if pause is None:
            raise translate(exc) from None
        return pause
