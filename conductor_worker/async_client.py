"""The asyncio client (FastAPI, aiohttp, Django async views): `Client`'s methods, awaited.

Its methods are the operations of operations.py run with grpc.aio calls, so arguments,
results, errors and retries are those of the blocking Client. Create it inside the event loop
that uses it (for example in a FastAPI lifespan) and close it there.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from typing import Any, Concatenate, ParamSpec, TypeVar

import grpc

from . import dashboard_ops, history_ops, operations, workflow_client
from .calls import Call, CallError, Operation, Tries, method_signature, resume
from .client import ClientBase

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def _awaited(op: Callable[P, Operation[R]]) -> Callable[Concatenate[AsyncClient, P], Awaitable[R]]:
    @functools.wraps(op)
    async def method(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self._run(op(*args, **kwargs))

    method.__signature__ = method_signature(op)  # type: ignore[attr-defined]
    return method


def _awaited_stream(
    op: Callable[P, Generator[Call | T, Any, None]],
) -> Callable[Concatenate[AsyncClient, P], AsyncIterator[T]]:
    @functools.wraps(op)
    def method(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> AsyncIterator[T]:
        return self._stream(op(*args, **kwargs))

    method.__signature__ = method_signature(op)  # type: ignore[attr-defined]
    return method


class AsyncClient(ClientBase):
    """A connection to a coordinator for asyncio code; `async with` it, or await close().
    Arguments as for `Client`."""

    def _open_channel(self) -> grpc.aio.Channel:
        return self.connection.aio_channel()

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the operations (operations.py has their documentation) --------------------------

    invoke = _awaited(operations.invoke)
    invoke_info = _awaited(operations.invoke_info)
    invoke_batch = _awaited(operations.invoke_batch)
    invoke_batch_info = _awaited(operations.invoke_batch_info)
    get = _awaited(operations.get)
    wait = _awaited(operations.wait)
    cancel = _awaited(operations.cancel)
    list = _awaited(operations.list_executions)
    iter = _awaited_stream(operations.iter_executions)
    schedule = _awaited(operations.schedule)
    unschedule = _awaited(operations.unschedule)
    schedules = _awaited(operations.schedules)
    steps = _awaited(operations.steps)
    workers = _awaited(operations.workers)
    queues = _awaited(operations.queues)
    status = _awaited(operations.status)
    logs = _awaited(operations.logs)
    attempts = _awaited(history_ops.attempts)
    rerun = _awaited(history_ops.rerun)
    retry = _awaited(history_ops.retry)
    bulk = _awaited(history_ops.bulk)
    tasks = _awaited(history_ops.tasks)
    delete_task = _awaited(history_ops.delete_task)
    page = _awaited(dashboard_ops.page)
    activity = _awaited(dashboard_ops.activity)
    emit = _awaited(workflow_client.emit)
    signal = _awaited(workflow_client.signal)
    workflow_wait = _awaited(workflow_client.workflow_wait)

    # -- the driver ---------------------------------------------------------------------

    async def _send(self, call: Call) -> Any:
        """As Client._send, awaited."""
        tries = Tries(call, self.timeout)
        method = getattr(self._stub, call.method)
        while True:
            try:
                return await method(call.request, timeout=tries.timeout(), metadata=self._metadata)
            except grpc.RpcError as exc:
                pause = tries.pause_after(exc)
            await asyncio.sleep(pause)

    async def _stream(self, op: Generator[Any, Any, None]) -> AsyncIterator[Any]:
        """Run a streaming operation: make its calls, yield its items."""
        reply: Any = None
        error: BaseException | None = None
        while True:
            try:
                out = resume(op, reply, error)
            except StopIteration:
                return
            reply, error = None, None
            if not isinstance(out, Call):
                yield out
                continue
            try:
                reply = await self._send(out)
            except CallError as exc:
                error = exc

    async def _run(self, op: Operation[R]) -> R:
        """Run an operation: make its calls; returns its result."""
        reply: Any = None
        error: BaseException | None = None
        while True:
            try:
                call = resume(op, reply, error)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            try:
                reply, error = await self._send(call), None
            except CallError as exc:
                reply, error = None, exc


__all__ = ["AsyncClient"]
