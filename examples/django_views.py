"""Django views that invoke tasks (`pip install 'conductor-tasks[examples]'`).

Wire them in your urls.py:

    from examples import django_views
    urlpatterns = [
        path("add", django_views.add),                        # async view: AsyncClient
        path("executions/<str:execution_id>", django_views.execution),  # sync view: Client
    ]

A sync view shares one thread-safe `Client` for the whole process. An async view makes an
`AsyncClient` per request, because Django may run each async request on its own event loop
(under WSGI) and a grpc.aio channel belongs to the loop it was made in; under ASGI with one
loop, keep one AsyncClient instead. Both read $CONDUCTOR_SERVER (default 127.0.0.1:50051).
"""

from __future__ import annotations

import functools
import json

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET, require_POST

from conductor_worker import AsyncClient, Client, ExecutionNotFound, TaskNotFound


@functools.cache
def client() -> Client:
    """The process's Client, made on first use."""
    return Client()


@require_POST
async def add(request: HttpRequest) -> HttpResponse:
    """POST {"a": 1, "b": 2}: invoke `add`, answer {"id": ...} (202)."""
    try:
        payload = json.loads(request.body)
        numbers = {"a": int(payload["a"]), "b": int(payload["b"])}
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"error": 'body: expected {"a": int, "b": int}'}, status=400)
    async with AsyncClient() as conductor:
        try:
            execution_id = await conductor.invoke("add", numbers)
        except TaskNotFound as exc:
            return JsonResponse({"error": str(exc)}, status=503)
    return JsonResponse({"id": execution_id}, status=202)


@require_GET
def execution(request: HttpRequest, execution_id: str) -> HttpResponse:
    """GET: the execution as JSON; ?wait=SECONDS waits for it to finish first."""
    wait = float(request.GET.get("wait", "0"))
    try:
        found = client().get(execution_id)
        if wait > 0 and not found.finished:
            try:
                found = client().wait(execution_id, timeout=wait)
            except TimeoutError:
                found = client().get(execution_id)
    except ExecutionNotFound:
        return JsonResponse({"error": f"no execution {execution_id}"}, status=404)
    return JsonResponse(found.to_dict())
