"""The dashboard's web application: routes, the Guard (login and sessions), the client of
the coordinator (made inside the server's event loop), error pages."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from importlib.resources import files

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from conductor_worker import ConductorError

from . import actions, live, pages
from .rendering import error_page, render
from .security import (
    Guard,
    Keys,
    action,
    clear_cookie_headers,
    new_session,
    safe_next,
    session_cookie_headers,
)
from .settings import UISettings


async def login_page(request: Request) -> Response:
    if request.state.authenticated and request.app.state.keys.login_token is not None:
        return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    return render(request, "login.html", next=safe_next(request.query_params.get("next")),
                  error=None)


@action
async def login(request: Request, form: dict[str, str]) -> Response:
    """Check the login token; on success, a new session (no fixation) with its auth cookie."""
    keys: Keys = request.app.state.keys
    target = safe_next(form.get("next"))
    if not keys.token_ok(form.get("token", "")):
        return render(request, "login.html", 401, next=target,
                      error="token: this is not the dashboard login token")
    session = new_session()
    response = RedirectResponse(target, status_code=303)
    secure = request.url.scheme == "https"
    for value in session_cookie_headers(session, secure, auth=keys.auth_value(session)):
        response.headers.append("set-cookie", value)
    return response


@action
async def logout(request: Request, form: dict[str, str]) -> Response:
    response = RedirectResponse("/login", status_code=303)
    for value in clear_cookie_headers():
        response.headers.append("set-cookie", value)
    return response


async def healthz(request: Request) -> Response:
    """For probes: the dashboard serves (it does not ask the coordinator)."""
    return PlainTextResponse("ok")


ROUTES = [
    Route("/healthz", healthz),
    Route("/", pages.overview),
    Route("/executions", pages.executions),
    Route("/executions/live", live.execution_rows),
    Route("/executions/{execution_id}", pages.execution),
    Route("/executions/{execution_id}/live", live.execution_detail),
    Route("/executions/{execution_id}/cancel", actions.cancel, methods=["POST"]),
    Route("/executions/{execution_id}/retry", actions.retry, methods=["POST"]),
    Route("/executions/{execution_id}/rerun", actions.rerun, methods=["POST"]),
    Route("/bulk", actions.bulk, methods=["POST"]),
    Route("/invoke", pages.invoke_page),
    Route("/invoke", actions.invoke, methods=["POST"]),
    Route("/workers", pages.workers),
    Route("/schedules", pages.schedules),
    Route("/queues", pages.queues),
    Route("/login", login_page),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Mount("/static", StaticFiles(directory=str(files("conductor_ui") / "static")),
          name="static"),
]


def create_app(settings: UISettings) -> Starlette:
    """The dashboard as an ASGI application (serve.py runs it with uvicorn)."""
    keys = Keys(settings.login_token)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = settings.client()
        app.state.client = client
        try:
            yield
        finally:
            await client.close()

    app = Starlette(
        routes=ROUTES,
        middleware=[Middleware(Guard, keys=keys)],
        exception_handlers={ConductorError: error_page, Exception: error_page},
        lifespan=lifespan,
    )
    app.state.keys = keys
    app.state.settings = settings
    return app
