"""The dashboard's guard, CSRF and settings, through its ASGI app (no sockets: Starlette's
test client; the coordinator is never reached, so every request that gets past the guard to
a page would fail with 503, which these tests tell apart from 401 and 403)."""

from __future__ import annotations

import re

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from conductor_ui import UISettings, create_app
from conductor_ui.app import ROUTES
from conductor_ui.security import AUTH_COOKIE, SESSION_COOKIE, safe_next
from conductor_ui.settings import UISettingsError
from conductor_worker import AsyncClient

TOKEN = "a-login-token-of-some-length"
#: nothing listens here: a request that reaches the coordinator fails (503)
NOWHERE = "127.0.0.1:9"


def _client() -> AsyncClient:
    return AsyncClient(NOWHERE, timeout=0.2)


def _app(login: str | None = TOKEN) -> TestClient:
    return TestClient(create_app(UISettings(client=_client, login_token=login)),
                      raise_server_exceptions=False)


def _routes() -> list[tuple[str, str]]:
    """(method, path) of every route, path parameters filled in."""
    found = []
    for route in ROUTES:
        if isinstance(route, Route):
            path = route.path.replace("{execution_id}", "7")
            found += [(m, path) for m in sorted(route.methods or ()) if m != "HEAD"]
    return found


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert match, page[:500]
    return match.group(1)


def test_without_the_token_every_page_and_action_answers_401() -> None:
    routes = _routes()
    assert len(routes) >= 17
    with _app() as http:
        for method, path in routes:
            response = http.request(method, path, data={"csrf": "x"}, follow_redirects=False)
            if path in ("/login", "/healthz"):  # the open ones (no data)
                assert response.status_code in (200, 401, 403), (method, path)
                continue
            assert response.status_code == 401, (method, path, response.status_code)
            assert "Log in" in response.text
        assert http.get("/executions/live").status_code == 401  # live updates too
        assert http.get("/static/app.js").status_code == 200  # no data in static files
        wrong = http.get("/", headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status_code == 401
        http.cookies.set(AUTH_COOKIE, "forged")
        assert http.get("/").status_code == 401


def test_a_login_opens_the_pages_and_no_secret_reaches_the_browser() -> None:
    with _app() as http:
        form = http.get("/login")
        assert form.status_code == 200 and TOKEN not in form.text
        bad = http.post("/login", data={"csrf": _csrf(form.text), "token": "nope"})
        assert bad.status_code == 401 and "token: this is not the dashboard login token" in bad.text
        assert TOKEN not in bad.text and "nope" not in bad.text
        before = http.cookies.get(SESSION_COOKIE)
        ok = http.post("/login", data={"csrf": _csrf(form.text), "token": TOKEN, "next": "/queues"},
                       follow_redirects=False)
        assert ok.status_code == 303 and ok.headers["location"] == "/queues"
        cookie = ok.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
        assert http.cookies.get(SESSION_COOKIE) != before  # a new session: no fixation
        page = http.get("/queues")
        assert page.status_code == 503  # past the guard; the coordinator is not there
        assert "not reachable" in page.text and TOKEN not in page.text
    with _app() as script:  # a script presents the token as a bearer token instead
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert script.get("/workers", headers=bearer).status_code == 503


def test_every_action_is_a_post_with_a_csrf_check() -> None:
    posts = [r for r in ROUTES if isinstance(r, Route) and "POST" in (r.methods or ())]
    assert len(posts) == 7  # cancel, retry, rerun, bulk, invoke, login, logout
    for route in posts:
        assert getattr(route.endpoint, "csrf_checked", False), route.path
        assert not {"GET", "PUT", "DELETE"} & set(route.methods or ()) or route.path in (
            "/invoke", "/login"), route.path
    with _app(login=None) as http:  # loopback without a login token: CSRF still applies
        page = http.get("/login")
        for route in posts:
            path = route.path.replace("{execution_id}", "7")
            for data in ({}, {"csrf": "0" * 64}):
                response = http.post(path, data=data, follow_redirects=False)
                assert response.status_code == 403, (path, data, response.status_code)
        other = TestClient(http.app, raise_server_exceptions=False)
        other.get("/login")  # another browser's session: its token does not fit this one
        stolen = other.post("/executions/7/cancel", data={"csrf": _csrf(page.text)})
        assert stolen.status_code == 403
        fits = http.post("/executions/7/cancel", data={"csrf": _csrf(page.text)})
        assert fits.status_code == 503  # accepted; the coordinator is not there


def test_settings_refuse_an_open_dashboard_beyond_loopback() -> None:
    with pytest.raises(UISettingsError, match=r"^--login-token-file: required"):
        UISettings(client=_client, host="0.0.0.0")
    with pytest.raises(UISettingsError, match=r"^--login-token-file: the token must be"):
        UISettings(client=_client, host="0.0.0.0", login_token="short")
    assert UISettings(client=_client, host="0.0.0.0", login_token=TOKEN).host == "0.0.0.0"
    assert UISettings(client=_client, host="::1").login_token is None
    assert UISettings(client=_client, host="localhost").login_token is None
    with pytest.raises(UISettingsError, match=r"^--refresh"):
        UISettings(client=_client, refresh_seconds=0)


@pytest.mark.parametrize(("target", "safe"), [
    ("/executions?task=a", "/executions?task=a"), ("//evil.example/", "/"),
    ("https://evil.example/", "/"), ("/\\evil", "/"), ("", "/"), (None, "/"),
])
def test_after_login_only_local_paths(target: str | None, safe: str) -> None:
    assert safe_next(target) == safe


@pytest.mark.parametrize(("notice", "shown"), [
    ("retry: 3 of 3 matching executions changed", True), ("rerun of 12", True),
    ("cancel requested", True), ("Your session expired: log in at evil.example", False),
    ("retried <script>", False),
])
def test_only_the_dashboard_own_notices_are_shown(notice: str, shown: bool) -> None:
    from urllib.parse import urlencode

    from starlette.requests import Request

    from conductor_ui.pages import notice_of

    request = Request({"type": "http", "query_string": urlencode({"notice": notice}).encode(),
                       "headers": []})
    assert notice_of(request) == (notice if shown else "")
