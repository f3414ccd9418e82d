"""Templates (Jinja2, autoescaped, shipped in the package), the helpers they use, and the
pages for the errors the coordinator answers with. No exception text of our own reaches a
page; the coordinator's INVALID_ARGUMENT / NOT_FOUND / FAILED_PRECONDITION messages do (they
are written for callers and name the field)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import grpc
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from conductor_worker import (
    ConductorError,
    ExecutionNotFound,
    FailedPrecondition,
    InvalidArgument,
    ScheduleNotFound,
    TaskNotFound,
    Unauthenticated,
)
from conductor_worker.retrying import status_code

from .detail import pretty

log = logging.getLogger("conductor.ui")

ENV = Environment(
    loader=PackageLoader("conductor_ui", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def when(value: datetime | None) -> str:
    """A time as UTC, to the second."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else ""


def seconds(value: float | None) -> str:
    """A duration, short: 12 ms, 3.4 s, 5 min 2 s, 2 h 5 min."""
    if value is None:
        return ""
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    if value < 3600:
        return f"{int(value // 60)} min {int(value % 60)} s"
    return f"{int(value // 3600)} h {int(value % 3600 // 60)} min"


def ago(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return ""
    delta = ((now or datetime.now(UTC)) - value).total_seconds()
    return f"{seconds(abs(delta))} {'ago' if delta >= 0 else 'from now'}"


ENV.filters.update(when=when, seconds=seconds, ago=ago, pretty=pretty)


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A page, with what every page needs (the CSRF token of this session, the nav)."""
    keys = request.app.state.keys
    context.update(
        request=request,
        csrf=keys.csrf_token(request.state.session),
        login_required=keys.login_token is not None,
        path=request.url.path,
    )
    return HTMLResponse(ENV.get_template(name).render(context), status_code=status)


def fragment(name: str, **context: Any) -> str:
    """A partial template as HTML text (for live updates)."""
    return ENV.get_template(name).render(context)


#: what the coordinator said, as (HTTP status, heading)
_KNOWN: tuple[tuple[type[ConductorError], int, str], ...] = (
    (ExecutionNotFound, 404, "No such execution"),
    (TaskNotFound, 404, "No such task"),
    (ScheduleNotFound, 404, "No such schedule"),
    (InvalidArgument, 400, "Not accepted"),
    (FailedPrecondition, 409, "Not possible now"),
    (Unauthenticated, 502, "The coordinator refused the dashboard's token"),
)


def explain(exc: BaseException) -> tuple[int, str, str]:
    """(status, heading, message) for an error of a coordinator call."""
    for kind, status, heading in _KNOWN:
        if isinstance(exc, kind):
            return status, heading, str(exc)
    code = status_code(exc) if isinstance(exc, grpc.RpcError) else None
    if code is not None:
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return 503, "The coordinator is not reachable", (
                "The dashboard could not reach its coordinator; it retries on the next "
                "request.")
        log.warning("coordinator call failed: %s", code.name)
        return 502, "The coordinator answered with an error", code.name
    log.exception("dashboard request failed", exc_info=exc)
    return 500, "Something went wrong", "The dashboard logged the details."


async def error_page(request: Request, exc: Exception) -> HTMLResponse:
    status, heading, message = explain(exc)
    return render(request, "error.html", status, heading=heading, message=message)
