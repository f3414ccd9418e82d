"""Live updates by server-sent events: while a list's first page or an unfinished execution
is open, the dashboard looks at the coordinator every `refresh_seconds` and sends the page's
changed part as HTML (event `rows` or `detail`); the page's script swaps it in. An execution's
stream ends once it is finished and its final state was sent."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from conductor_worker import ConductorError, ExecutionNotFound

from . import detail
from .filters import FilterError, read_filter
from .pages import client_of
from .rendering import ENV, explain

log = logging.getLogger("conductor.ui")
#: a comment line this often keeps proxies from closing a quiet stream
KEEPALIVE_SECONDS = 15.0


def _event(name: str, html: str) -> str:
    lines = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
    return f"event: {name}\n{lines}\n"


async def _changes(
    request: Request, name: str, produce: Callable[[], Awaitable[tuple[str, bool]]]
) -> AsyncIterator[str]:
    """Send `produce()`'s HTML whenever it changes, until the client goes away or it says
    it is done. A failed look is reported to the page (event `trouble`) and retried."""
    every = request.app.state.settings.refresh_seconds
    last, quiet = None, 0.0
    yield "retry: 2000\n\n"
    while not await request.is_disconnected():
        try:
            html, done = await produce()
        except ExecutionNotFound:
            yield _event("gone", "This execution no longer exists.")
            return
        except (ConductorError, Exception) as exc:  # one bad look never ends the stream
            yield _event("trouble", explain(exc)[1])
            html, done = None, False
        if html is not None and html != last:
            yield _event(name, html)
            last, quiet = html, 0.0
        if done:
            return
        await asyncio.sleep(every)
        quiet += every
        if quiet >= KEEPALIVE_SECONDS:
            yield ": keepalive\n\n"
            quiet = 0.0


def _stream(events: AsyncIterator[str]) -> Response:
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def execution_rows(request: Request) -> Response:
    """The first page of the filtered list, as table rows."""
    try:
        f = read_filter(dict(request.query_params))
    except FilterError as exc:
        return Response(str(exc), status_code=400)
    client = client_of(request)
    size = request.app.state.settings.page_size

    async def rows() -> tuple[str, bool]:
        page = await client.page(**f.page_args(), page_size=size)
        html = ENV.get_template("_rows.html").render(page=page, now=datetime.now(UTC))
        return html, False

    return _stream(_changes(request, "rows", rows))


async def execution_detail(request: Request) -> Response:
    """The live part of an execution's page (everything below the actions)."""
    client = client_of(request)
    execution_id = str(request.path_params["execution_id"])
    csrf = request.app.state.keys.csrf_token(request.state.session)

    async def sections() -> tuple[str, bool]:
        found = await detail.load(client, execution_id)
        html = ENV.get_template("_detail.html").render(d=found, e=found.execution, csrf=csrf)
        return html, not found.live

    return _stream(_changes(request, "detail", sections))
