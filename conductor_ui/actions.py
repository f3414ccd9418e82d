"""The dashboard's actions (POST, CSRF-checked by security.action): cancel, retry, rerun,
invoke, and bulk cancel / retry of what the list's filter shows (counted first, then
confirmed). Bad input is answered on the page with a message naming the field, and nothing
is written."""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from conductor_worker import ConductorError, FailedPrecondition, InvalidArgument, TaskNotFound

from .filters import FilterError, read_filter
from .pages import client_of, invoke_form
from .rendering import explain, render
from .security import action

#: bulk actions the page offers
BULK = ("cancel", "retry")
#: largest payload the form accepts (the coordinator has its own limit, usually 1 MiB)
MAX_FORM_PAYLOAD = 4 * 1024 * 1024


def _to(path: str, notice: str = "") -> RedirectResponse:
    target = path + (f"?notice={quote(notice)}" if notice else "")
    return RedirectResponse(target, status_code=303)


def _execution_id(request: Request) -> str:
    return str(request.path_params["execution_id"])


async def _refused(request: Request, exc: ConductorError, back: str) -> Response:
    status, heading, message = explain(exc)
    return render(request, "error.html", status, heading=heading, message=message, back=back)


@action
async def cancel(request: Request, form: dict[str, str]) -> Response:
    """Cancel an execution (a running one stops at its next step or checkpoint)."""
    execution_id = _execution_id(request)
    try:
        await client_of(request).cancel(execution_id)
    except (FailedPrecondition, InvalidArgument) as exc:
        return await _refused(request, exc, f"/executions/{execution_id}")
    return _to(f"/executions/{execution_id}", "cancel requested")


@action
async def retry(request: Request, form: dict[str, str]) -> Response:
    """Run a failed or cancelled execution again, in place (recorded steps kept)."""
    execution_id = _execution_id(request)
    try:
        await client_of(request).retry(execution_id)
    except (FailedPrecondition, InvalidArgument) as exc:
        return await _refused(request, exc, f"/executions/{execution_id}")
    return _to(f"/executions/{execution_id}", "retried")


@action
async def rerun(request: Request, form: dict[str, str]) -> Response:
    """A new execution of a finished one (from a chosen step: the earlier ones copied)."""
    execution_id = _execution_id(request)
    try:
        new = await client_of(request).rerun(execution_id, from_step=form.get("from_step") or None)
    except (FailedPrecondition, InvalidArgument) as exc:
        return await _refused(request, exc, f"/executions/{execution_id}")
    return _to(f"/executions/{new.id}", f"rerun of {execution_id}")


class FormError(ValueError):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


def _invoke_args(form: dict[str, str]) -> tuple[str, Any, dict[str, Any]]:
    """(task, payload, options) of the invoke form; FormError naming the field."""
    task = form.get("task", "").strip()
    if not task:
        raise FormError("task", "choose a task")
    text = form.get("payload", "").strip()
    if len(text) > MAX_FORM_PAYLOAD:
        raise FormError("payload", f"larger than {MAX_FORM_PAYLOAD} bytes")
    try:
        payload = json.loads(text) if text else None
    except ValueError as exc:
        raise FormError("payload", f"not valid JSON: {exc}") from None
    except RecursionError:
        raise FormError("payload", "nested too deeply") from None
    options: dict[str, Any] = {"queue": form.get("queue", "").strip() or None}
    try:
        options["priority"] = int(form.get("priority") or 0)
    except ValueError:
        raise FormError("priority", "must be a whole number") from None
    delay = form.get("delay", "").strip()
    if delay:
        try:
            options["delay"] = float(delay)
        except ValueError:
            raise FormError("delay", "must be a number of seconds") from None
        if not (math.isfinite(options["delay"]) and options["delay"] >= 0):
            raise FormError("delay", "must be a number of seconds >= 0")
    return task, payload, options


@action
async def invoke(request: Request, form: dict[str, str]) -> Response:
    """Invoke a task with a JSON payload; on success, go to the new execution."""
    values = {k: form.get(k, "") for k in ("task", "payload", "queue", "priority", "delay")}
    try:
        task, payload, options = _invoke_args(form)
        execution_id = await client_of(request).invoke(task, payload, **options)
    except FormError as exc:
        return await invoke_form(request, 400, values=values, error=str(exc),
                                 error_field=exc.field)
    except TaskNotFound as exc:
        return await invoke_form(request, 400, values=values, error=f"task: {exc}",
                                 error_field="task")
    except InvalidArgument as exc:
        message = str(exc)
        named = message.split(":", 1)[0].split(".")[-1]
        return await invoke_form(request, 400, values=values, error=message,
                                 error_field=named if named in values else None)
    return _to(f"/executions/{execution_id}", "invoked")


@action
async def bulk(request: Request, form: dict[str, str]) -> Response:
    """Bulk cancel or retry of every execution the filter matches: the first POST counts
    them (a dry run) and asks to confirm; the confirming POST applies the action."""
    what = form.get("action", "")
    try:
        f = read_filter(form)
    except FilterError as exc:
        return render(request, "error.html", 400, heading="Not accepted", message=str(exc),
                      back="/executions")
    back = f"/executions?{f.query()}"
    if what not in BULK:
        return render(request, "error.html", 400, heading="Not accepted",
                      message=f"action: must be one of {', '.join(BULK)}", back=back)
    args = f.page_args()
    try:
        if form.get("confirm") != "yes":
            counted = await client_of(request).bulk(what, **args, dry_run=True)
            return render(request, "bulk_confirm.html", action=what, filter=f,
                          matched=counted.matched, back=back)
        done = await client_of(request).bulk(what, **args)
    except InvalidArgument as exc:
        return await _refused(request, exc, back)
    notice = f"{what}: {done.changed} of {done.matched} matching executions changed"
    return RedirectResponse(f"{back}&notice={quote(notice)}" if f.query() else
                            f"/executions?notice={quote(notice)}", status_code=303)
