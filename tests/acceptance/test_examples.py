"""The web examples invoke tasks through a real coordinator and worker: the FastAPI app with
its TestClient, the Django views with Django's test client."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

pytestmark = pytest.mark.acceptance


@pytest.fixture
def served(address: str, spawn_worker: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """A worker for examples.tasks; the examples find the coordinator in $CONDUCTOR_SERVER."""
    spawn_worker(address, "examples.tasks")
    monkeypatch.setenv("CONDUCTOR_SERVER", address)
    return address


def test_fastapi_app_invokes_and_reads(served: str) -> None:
    testclient = pytest.importorskip("fastapi.testclient")
    from examples.fastapi_app import app

    with testclient.TestClient(app) as http:
        created = http.post("/add", params={"a": 2, "b": 40})
        assert created.status_code == 200, created.text
        execution_id = created.json()["id"]
        done = http.get(f"/executions/{execution_id}", params={"wait": 60})
        assert done.status_code == 200
        assert (done.json()["state"], done.json()["result"]) == ("succeeded", 42)
        assert http.get("/executions/999999999").status_code == 404
        assert http.post("/add", params={"a": "x", "b": 1}).status_code == 422


def test_django_views_invoke_and_read(served: str) -> None:
    django = pytest.importorskip("django")
    from django.conf import settings

    if not settings.configured:
        settings.configure(ROOT_URLCONF=__name__, ALLOWED_HOSTS=["testserver"], DEBUG=True)
        django.setup()
    from django.test import AsyncRequestFactory, RequestFactory

    from examples import django_views

    async def post() -> Any:
        request = AsyncRequestFactory().post(
            "/add", data=json.dumps({"a": 1, "b": 2}), content_type="application/json"
        )
        return await django_views.add(request)

    created = asyncio.run(post())
    assert created.status_code == 202, created.content
    execution_id = json.loads(created.content)["id"]
    done = django_views.execution(
        RequestFactory().get("/executions", {"wait": "60"}), execution_id=execution_id
    )
    assert json.loads(done.content)["result"] == 3
    missing = django_views.execution(RequestFactory().get("/executions"), execution_id="999999999")
    assert missing.status_code == 404
    bad_request = AsyncRequestFactory().post("/add", data="[]", content_type="application/json")
    bad = asyncio.run(django_views.add(bad_request))
    assert bad.status_code == 400
    django_views.client().close()
    django_views.client.cache_clear()


urlpatterns: list[Any] = []
