"""A FastAPI app that invokes tasks with AsyncClient (`pip install 'conductor-tasks[examples]'`).

    conductor dev examples.tasks                        # a coordinator and a worker
    uvicorn examples.fastapi_app:app --port 8000        # this app (uvicorn not included)
    curl -X POST 'localhost:8000/add?a=1&b=2'           # {"id": "1"}
    curl 'localhost:8000/executions/1?wait=10'          # {"id": "1", "state": "succeeded", ...}

One AsyncClient serves every request: it is made in the app's lifespan, inside the event loop
that uses it, and reads $CONDUCTOR_SERVER (default 127.0.0.1:50051).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request

from conductor_worker import AsyncClient, ExecutionNotFound, TaskNotFound
from examples.tasks import add as add_task


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with AsyncClient() as client:
        app.state.conductor = client
        yield


app = FastAPI(lifespan=lifespan)


def conductor(request: Request) -> AsyncClient:
    client: AsyncClient = request.app.state.conductor
    return client


@app.post("/add")
async def add(a: int, b: int, request: Request) -> dict[str, str]:
    """Invoke the `add` task (by its task object) and answer with the execution's id."""
    try:
        execution_id = await conductor(request).invoke(add_task, {"a": a, "b": b})
    except TaskNotFound as exc:  # no worker has registered the task yet
        raise HTTPException(503, str(exc)) from None
    return {"id": execution_id}


@app.get("/executions/{execution_id}")
async def execution(execution_id: str, request: Request, wait: float = 0) -> dict[str, Any]:
    """The execution; with `wait`, once it has finished (or after that many seconds)."""
    client = conductor(request)
    try:
        found = await client.get(execution_id)
        if wait > 0 and not found.finished:
            try:
                found = await client.wait(execution_id, timeout=wait)
            except TimeoutError:
                found = await client.get(execution_id)
    except ExecutionNotFound:
        raise HTTPException(404, f"no execution {execution_id}") from None
    return found.to_dict()
