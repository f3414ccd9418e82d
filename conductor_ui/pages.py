"""The dashboard's pages (GET): overview, executions, an execution, workers, schedules,
queues, the invoke form. Each asks the coordinator through the public API only."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from conductor_worker import AsyncClient

from . import detail
from .filters import ExecutionFilter, FilterError, read_filter
from .rendering import render

#: the notices actions redirect with (anything else in ?notice= is not shown, so that a
#: link cannot make the dashboard display text of someone else's choosing)
NOTICE = re.compile(r"(cancel requested|retried|invoked|rerun of \d+"
                    r"|(cancel|retry): \d+ of \d+ matching executions changed)")


def notice_of(request: Request) -> str:
    text = request.query_params.get("notice", "")
    return text if NOTICE.fullmatch(text) else ""


def client_of(request: Request) -> AsyncClient:
    return request.app.state.client  # type: ignore[no-any-return]


async def overview(request: Request) -> Response:
    """Per task: pending, running, failed in the last hour, throughput, oldest ready age;
    the workers; tasks no connected worker serves."""
    client = client_of(request)
    queues, activity, workers = await asyncio.gather(
        client.queues(), client.activity(), client.workers()
    )
    by_task = {a.task: a for a in activity.tasks}
    rows = []
    for q in queues:
        a = by_task.get(q.task)
        finished = [s + f for s, f in zip(a.succeeded, a.failed, strict=True)] if a else []
        rows.append({
            "queue": q, "failed": sum(a.failed) if a else 0,
            "succeeded": sum(a.succeeded) if a else 0, "series": finished,
            "peak": max(finished, default=0),
        })
    unserved = [q.task for q in queues if q.live_workers == 0]
    return render(request, "overview.html", rows=rows, workers=workers, unserved=unserved,
                  activity=activity)


async def executions(request: Request) -> Response:
    """The filtered list, one page at a time (cursor paging; live on the first page)."""
    client = client_of(request)
    tasks = await client.tasks()
    params = dict(request.query_params)
    try:
        f = read_filter(params)
    except FilterError as exc:
        return render(request, "executions.html", 400, filter=ExecutionFilter(), error=str(exc),
                      error_field=exc.field, page=None, tasks=tasks, raw=params, cursor="",
                      notice="")
    cursor = params.get("page", "")
    page = await client.page(**f.page_args(), page_size=request.app.state.settings.page_size,
                             page_token=cursor)
    return render(request, "executions.html", filter=f, page=page, tasks=tasks, raw=params,
                  cursor=cursor, error=None, error_field=None, now=datetime.now(UTC),
                  notice=notice_of(request))


async def execution(request: Request) -> Response:
    """An execution: payload, outcome, steps on a timeline, attempts, children, logs."""
    found = await detail.load(client_of(request), str(request.path_params["execution_id"]))
    return render(request, "execution.html", d=found, e=found.execution,
                  notice=notice_of(request))


async def workers(request: Request) -> Response:
    found = await client_of(request).workers()
    return render(request, "workers.html", workers=found, now=datetime.now(UTC))


async def schedules(request: Request) -> Response:
    found = await client_of(request).schedules()
    return render(request, "schedules.html", schedules=found, now=datetime.now(UTC))


async def queues(request: Request) -> Response:
    found = await client_of(request).queues()
    return render(request, "queues.html", queues=found)


async def invoke_form(request: Request, status: int = 200, **context: Any) -> Response:
    tasks = await client_of(request).tasks()
    values = context.pop("values", {"task": request.query_params.get("task", ""),
                                    "payload": "{}", "queue": "", "priority": "0",
                                    "delay": ""})
    return render(request, "invoke.html", status, tasks=tasks, values=values,
                  error=context.get("error"), error_field=context.get("error_field"))


async def invoke_page(request: Request) -> Response:
    return await invoke_form(request)
