"""Who may use the dashboard, and that every action comes from its own pages.

- A session cookie (random, HttpOnly, SameSite=Lax: a link from elsewhere opens a page
  logged in; a cross-site POST carries no cookie) is set on the first response.
- With a login token, a browser logs in once (POST /login); the auth cookie is an HMAC of the
  session id under a key derived from the token, so every replica behind a load balancer
  accepts it, and changing the token logs everyone out. Scripts may send the token as
  `Authorization: Bearer ...` instead. Anything else gets 401 (pages, actions, live updates);
  only /login, /static and /healthz (no data) are open.
- Every action is a POST that carries a CSRF token: an HMAC of the session id, in a hidden
  form field or the X-CSRF-Token header (bearer-token requests carry no ambient credentials
  and need none). A wrong or missing one: 403, nothing done.
- Neither the login token nor the coordinator's token is ever rendered into a page.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SESSION_COOKIE = "conductor_ui_session"
AUTH_COOKIE = "conductor_ui_auth"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
#: paths anyone may fetch: the login form, the static files and the probe (no data in any)
OPEN_PREFIXES = ("/login", "/static/", "/healthz")


class Keys:
    """The HMAC keys of the auth cookie and of CSRF tokens."""

    def __init__(self, login_token: str | None) -> None:
        self.login_token = login_token
        seed = login_token.encode() if login_token else secrets.token_bytes(32)
        self._auth = hmac.new(seed, b"conductor-ui auth", hashlib.sha256).digest()
        self._csrf = hmac.new(seed, b"conductor-ui csrf", hashlib.sha256).digest()

    def auth_value(self, session: str) -> str:
        return hmac.new(self._auth, session.encode(), hashlib.sha256).hexdigest()

    def csrf_token(self, session: str) -> str:
        return hmac.new(self._csrf, session.encode(), hashlib.sha256).hexdigest()

    def token_ok(self, presented: str) -> bool:
        return self.login_token is not None and hmac.compare_digest(
            presented.encode(), self.login_token.encode()
        )


def new_session() -> str:
    return secrets.token_urlsafe(32)


class Guard:
    """ASGI middleware: gives every browser a session, and answers 401 to requests that
    need a login and have none (scope["state"] gets session, authenticated, bearer)."""

    def __init__(self, app: ASGIApp, keys: Keys) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        cookies = _cookies(headers.get("cookie", ""))
        session = cookies.get(SESSION_COOKIE) or ""
        fresh = not _valid_session(session)
        if fresh:
            session = new_session()
        bearer = _bearer(headers.get("authorization", ""))
        authed = self.keys.login_token is None or (
            bearer is not None and self.keys.token_ok(bearer)
        ) or (not fresh and hmac.compare_digest(
            cookies.get(AUTH_COOKIE, ""), self.keys.auth_value(session)))
        began = time.perf_counter()
        state = scope.setdefault("state", {})
        state.update(session=session, authenticated=authed, bearer=bearer is not None)
        path: str = scope["path"]
        if not authed and not path.startswith(OPEN_PREFIXES):
            response = unauthorized(path)
            await response(scope, receive, _with_session(send, session, fresh, scope))
            return
        await self.app(scope, receive, _with_session(_timed(send, began), session, fresh, scope))


def unauthorized(path: str) -> Response:
    """401: a short page that links to the login form (JSON-free; scripts read the status)."""
    body = (
        "<!doctype html><title>Log in - Conductor</title>"
        "<p>This dashboard needs its login token. "
        f"<a href=\"/login?next={_quote(path)}\">Log in</a></p>"
    )
    return Response(body, status_code=401, media_type="text/html",
                    headers={"WWW-Authenticate": 'Bearer realm="conductor-ui"'})


def session_cookie_headers(session: str, secure: bool, *, auth: str | None = None) -> list[str]:
    """Set-Cookie values for the session (and, after a login, the auth cookie)."""
    flags = "; Path=/; HttpOnly; SameSite=Lax" + ("; Secure" if secure else "")
    values = [f"{SESSION_COOKIE}={session}{flags}"]
    if auth is not None:
        values.append(f"{AUTH_COOKIE}={auth}{flags}")
    return values


def clear_cookie_headers() -> list[str]:
    return [f"{name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"
            for name in (SESSION_COOKIE, AUTH_COOKIE)]


Handler = Callable[[Request], Awaitable[Response]]


def action(handler: Callable[[Request, dict[str, str]], Awaitable[Response]]) -> Handler:
    """Wrap a POST handler: it is given the form only after its CSRF token is checked
    (403 otherwise, nothing done). Every action route uses this (a test checks)."""

    async def checked(request: Request) -> Response:
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        if not request.state.bearer:
            keys: Keys = request.app.state.keys
            presented = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER, "")
            expected = keys.csrf_token(request.state.session)
            if not hmac.compare_digest(presented.encode(), expected.encode()):
                return Response("The form is stale or came from another site (CSRF check "
                                "failed); reload the page and try again.", status_code=403)
        return await handler(request, form)

    checked.csrf_checked = True  # type: ignore[attr-defined]
    checked.__name__ = handler.__name__
    checked.__doc__ = handler.__doc__
    return checked


def _timed(send: Send, began: float) -> Send:
    """Add `Server-Timing: app;dur=<ms>` (time to the response's headers: what the page's
    coordinator calls and its rendering took; docs/performance.md S14 reads it)."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            took = (time.perf_counter() - began) * 1000
            headers = [*message.get("headers", []),
                       (b"server-timing", f"app;dur={took:.2f}".encode())]
            message = {**message, "headers": headers}
        await send(message)

    return sending


def _with_session(send: Send, session: str, fresh: bool, scope: Scope) -> Send:
    if not fresh:
        return send
    secure = scope.get("scheme") == "https"

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            if not any(k.lower() == b"set-cookie" and SESSION_COOKIE.encode() in v
                       for k, v in headers):
                headers += [(b"set-cookie", value.encode("latin-1"))
                            for value in session_cookie_headers(session, secure)]
            message = {**message, "headers": headers}
        await send(message)

    return sending


def _cookies(header: str) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except Exception:  # a malformed Cookie header is treated as none
        return {}
    return {k: m.value for k, m in jar.items()}


def _valid_session(value: str) -> bool:
    return 20 <= len(value) <= 100 and all(c.isalnum() or c in "-_" for c in value)


def _bearer(header: str) -> str | None:
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/")


def safe_next(value: Any) -> str:
    """Where to go after logging in: a local path only (no open redirect)."""
    text = str(value or "/")
    if not text.startswith("/") or text.startswith("//") or "\\" in text:
        return "/"
    return text
