"""Cross-cutting gRPC hooks, one concern each: auth, metrics, domain errors -> status codes.

Each interceptor wraps the method handler it is given, so they compose in the order the
server lists them (metrics first, so refused calls are counted too, then auth, then errors).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import grpc
import psycopg

from .metrics import CoordinatorMetrics
from .models import ConductorError, FailedPrecondition, InvalidArgument, NotFound

if TYPE_CHECKING:  # grpc's classes are not subscriptable at run time
    Continuation: TypeAlias = Callable[
        [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
    ]
    Deserializer: TypeAlias = Callable[[bytes], Any]
    Unary: TypeAlias = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]
    Streaming: TypeAlias = Callable[
        [Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]
    ]

log = logging.getLogger(__name__)

#: All a caller learns of an unexpected failure (the traceback is logged, never sent).
INTERNAL_MESSAGE = "internal error; the coordinator logged the details"
#: Longest status message sent (messages echo input; validation cuts values shorter).
MAX_DETAILS = 1000


def _details(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) <= MAX_DETAILS else text[:MAX_DETAILS] + "..."


#: What the lenient deserializer returns for bytes that are not a valid message.
_UNDECODABLE = object()


async def _decoded(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        if request is _UNDECODABLE:
            raise InvalidArgument("request", "not a valid protobuf message")
        yield request


#: Reachable without a token: health checks (Kubernetes probes cannot send one).
OPEN_SERVICES = ("/grpc.health.v1.Health/",)


class _Wrapping(grpc.aio.ServerInterceptor):
    """Base: rebuild the handler with wrapped unary-unary / stream-stream behaviour."""

    async def intercept_service(
        self, continuation: Continuation, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method
        deserializer = self.wrap_deserializer(handler.request_deserializer)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self.wrap_unary(method, cast("Unary", handler.unary_unary)),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:  # same shape as unary: (request(s), context)
            return grpc.stream_unary_rpc_method_handler(
                self.wrap_unary(method, cast("Unary", handler.stream_unary)),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self.wrap_stream(method, cast("Streaming", handler.stream_stream)),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def wrap_deserializer(self, inner: Deserializer | None) -> Deserializer | None:
        return inner

    def wrap_unary(self, method: str, inner: Unary) -> Unary:
        return inner

    def wrap_stream(self, method: str, inner: Streaming) -> Streaming:
        return inner


class ErrorInterceptor(_Wrapping):
    """Maps domain errors to gRPC status codes, in one place.

    The database being out of reach (connection refused or lost, server shutting down, pool
    timeout: psycopg's OperationalError and the pool's errors derived from it) is UNAVAILABLE
    with a plain message, so that callers know the call may be retried; the driver's text
    goes to the log only. A worker stream ends the same way, and the worker reconnects."""

    UNAVAILABLE = "database unavailable; retry"

    CODES: dict[type[ConductorError], grpc.StatusCode] = {
        NotFound: grpc.StatusCode.NOT_FOUND,
        InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
        FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    }

    def _code(self, exc: ConductorError) -> grpc.StatusCode:
        for kind, code in self.CODES.items():
            if isinstance(exc, kind):
                return code
        return grpc.StatusCode.INTERNAL

    def wrap_deserializer(self, inner: Deserializer | None) -> Deserializer | None:
        """Undecodable bytes become INVALID_ARGUMENT (grpc itself would answer UNKNOWN with
        the parser's text and log a traceback)."""
        if inner is None:
            return None

        def lenient(data: bytes) -> Any:
            try:
                return inner(data)
            except Exception:
                return _UNDECODABLE

        return lenient

    def wrap_unary(self, method: str, inner: Unary) -> Unary:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                if request is _UNDECODABLE:
                    raise InvalidArgument("request", "not a valid protobuf message")
                return await inner(request, context)
            except grpc.aio.AbortError:
                raise  # the call was already answered (context.abort)
            except Exception as exc:
                await self._abort(method, exc, context)

        return wrapped

    def wrap_stream(self, method: str, inner: Streaming) -> Streaming:
        async def wrapped(
            requests: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            try:
                async for response in inner(_decoded(requests), context):
                    yield response
            except grpc.aio.AbortError:
                raise  # the call was already answered (context.abort)
            except Exception as exc:
                await self._abort(method, exc, context)

        return wrapped

    async def _abort(
        self, method: str, exc: Exception, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        """End the call with the status `exc` maps to; never with internal text."""
        if isinstance(exc, ConductorError):
            await context.abort(self._code(exc), _details(exc))
        elif isinstance(exc, psycopg.OperationalError):  # connection lost, pool timeout
            log.warning("%s: database unavailable: %s", method, str(exc).strip())
            await context.abort(grpc.StatusCode.UNAVAILABLE, self.UNAVAILABLE)
        else:
            log.error("%s failed", method, exc_info=exc)
            await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)


class AuthInterceptor(_Wrapping):
    """Requires `authorization: Bearer <token>` on every call but health checks.

    The token is compared in constant time and never logged or echoed.
    """

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(
        self, continuation: Continuation, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        if details.method.startswith(OPEN_SERVICES) or self._allowed(
            details.invocation_metadata
        ):
            return await continuation(details)
        # Refused before any request message is read: the caller's body is never buffered
        # beyond the HTTP/2 flow-control window, nor parsed (garbage gets UNAUTHENTICATED).
        return _REFUSE

    def _allowed(self, metadata: Any) -> bool:
        for key, value in metadata or ():
            if key == "authorization":
                given = value.encode() if isinstance(value, str) else value
                return hmac.compare_digest(given, self._expected)
        return False


async def _unauthenticated(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token")


#: A stream-unary handler serves any method: it answers without reading a message.
_REFUSE: grpc.RpcMethodHandler[Any, Any] = grpc.stream_unary_rpc_method_handler(_unauthenticated)


class MetricsInterceptor(_Wrapping):
    """Counts calls by method and status code."""

    def __init__(self, metrics: CoordinatorMetrics) -> None:
        self.metrics = metrics

    def _record(self, method: str, context: grpc.aio.ServicerContext[Any, Any], ok: bool) -> None:
        code = context.code()
        name = code.name if isinstance(code, grpc.StatusCode) else ("OK" if ok else "UNKNOWN")
        self.metrics.grpc_requests.labels(method, name).inc()

    def wrap_unary(self, method: str, inner: Unary) -> Unary:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            ok = False
            try:
                response = await inner(request, context)
                ok = True
                return response
            finally:
                self._record(method, context, ok)

        return wrapped

    def wrap_stream(self, method: str, inner: Streaming) -> Streaming:
        async def wrapped(
            requests: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            ok = False
            try:
                async for response in inner(requests, context):
                    yield response
                ok = True
            finally:
                self._record(method, context, ok)

        return wrapped
