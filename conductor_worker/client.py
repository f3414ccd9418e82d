"""The blocking Python client of the public API (`conductor.v1.ConductorService`).

Its methods are the operations of operations.py, run with blocking gRPC calls; AsyncClient
(async_client.py) runs the same operations with awaited ones.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import grpc

from conductor.v1 import client_pb2_grpc

from . import dashboard_ops, history_ops, operations, workflow_client
from .calls import Call, CallError, Operation, Tries, method_signature, resume
from .connection import Connection
from .errors import ConductorError
from .history import ErrorInfo
from .records import Execution, QueueInfo, Schedule, Step, WorkerInfo

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def _blocking(op: Callable[P, Operation[R]]) -> Callable[Concatenate[Client, P], R]:
    @functools.wraps(op)
    def method(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._run(op(*args, **kwargs))

    method.__signature__ = method_signature(op)  # type: ignore[attr-defined]
    return method


def _blocking_stream(
    op: Callable[P, Generator[Call | T, Any, None]],
) -> Callable[Concatenate[Client, P], Iterator[T]]:
    @functools.wraps(op)
    def method(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        return self._stream(op(*args, **kwargs))

    method.__signature__ = method_signature(op)  # type: ignore[attr-defined]
    return method


class ClientBase:
    """What both clients hold: where the coordinator is, the channel and the stub."""

    def __init__(
        self,
        address: str | None = None,
        *,
        timeout: float = 30.0,
        token: str | None = None,
        tls_ca: str | Path | None = None,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
        connection: Connection | None = None,
    ) -> None:
        """`address` defaults to $CONDUCTOR_SERVER; `token` to $CONDUCTOR_AUTH_TOKEN; TLS is
        on when a CA or client certificate is given (or $CONDUCTOR_TLS_CA is set)."""
        self.connection = connection or Connection.resolve(
            address, token=token, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key
        )
        self.address = self.connection.address
        self.timeout = timeout
        self._channel = self._open_channel()
        self._metadata = self.connection.metadata
        self._stub = client_pb2_grpc.ConductorServiceStub(self._channel)

    def _open_channel(self) -> Any:
        raise NotImplementedError


class Client(ClientBase):
    """A connection to a coordinator. Thread-safe; close it (or use `with`) when done."""

    def _open_channel(self) -> grpc.Channel:
        return self.connection.channel()

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the operations (operations.py has their documentation) --------------------------

    invoke = _blocking(operations.invoke)
    invoke_info = _blocking(operations.invoke_info)
    invoke_batch = _blocking(operations.invoke_batch)
    invoke_batch_info = _blocking(operations.invoke_batch_info)
    get = _blocking(operations.get)
    wait = _blocking(operations.wait)
    cancel = _blocking(operations.cancel)
    list = _blocking(operations.list_executions)
    iter = _blocking_stream(operations.iter_executions)
    schedule = _blocking(operations.schedule)
    unschedule = _blocking(operations.unschedule)
    schedules = _blocking(operations.schedules)
    steps = _blocking(operations.steps)
    workers = _blocking(operations.workers)
    queues = _blocking(operations.queues)
    status = _blocking(operations.status)
    logs = _blocking(operations.logs)
    attempts = _blocking(history_ops.attempts)
    rerun = _blocking(history_ops.rerun)
    retry = _blocking(history_ops.retry)
    bulk = _blocking(history_ops.bulk)
    tasks = _blocking(history_ops.tasks)
    delete_task = _blocking(history_ops.delete_task)
    page = _blocking(dashboard_ops.page)
    activity = _blocking(dashboard_ops.activity)
    emit = _blocking(workflow_client.emit)
    signal = _blocking(workflow_client.signal)
    workflow_wait = _blocking(workflow_client.workflow_wait)

    # -- the driver ---------------------------------------------------------------------

    def _call(
        self,
        method: Callable[..., T],
        request: Any,
        timeout: float | None = None,
        *,
        retry: bool = False,
    ) -> T:
        """One call of a stub method, with the tries and errors of every operation (for
        requests built by hand, as tests of the coordinator's input checks do)."""
        reply: T = self._send(Call("", request, retry=retry, budget=timeout), method)
        return reply

    def _send(self, call: Call, method: Callable[..., Any] | None = None) -> Any:
        """One call; with `retry`, repeated on UNAVAILABLE (see retrying.py) while its
        budget lasts, each try getting the time left (or its own deadline)."""
        tries = Tries(call, self.timeout)
        method = method or getattr(self._stub, call.method)
        while True:
            try:
                return method(call.request, timeout=tries.timeout(), metadata=self._metadata)
            except grpc.RpcError as exc:
                pause = tries.pause_after(exc)
            time.sleep(pause)

    def _stream(self, op: Generator[Any, Any, Any]) -> Iterator[Any]:
        """Run an operation: make its calls, yield its items; returns its result."""
        reply: Any = None
        error: BaseException | None = None
        while True:
            try:
                out = resume(op, reply, error)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            reply, error = None, None
            if not isinstance(out, Call):
                yield out
                continue
            try:
                reply = self._send(out)
            except CallError as exc:
                error = exc

    def _run(self, op: Operation[R]) -> R:
        stream = self._stream(op)
        while True:
            try:
                next(stream)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]


__all__ = [
    "Client",
    "ConductorError",
    "ErrorInfo",
    "Execution",
    "QueueInfo",
    "Schedule",
    "Step",
    "WorkerInfo",
]
