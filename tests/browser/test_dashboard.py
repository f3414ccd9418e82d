"""The dashboard in a real browser against a real coordinator and worker: live list,
step timeline, cancel, filters, invoke (and its bad input), bulk retry, login."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from conductor_worker import Client
from tests.browser.conftest import TASKS
from tests.conftest import wait_for

pytestmark = pytest.mark.acceptance
#: the issue's bound: an invoked execution shows in the open list this soon after it starts
LIVE_WITHIN = 2.0
TOKEN = "browser-test-login-token"


def _row(page: Any, execution_id: str) -> Any:
    return page.locator(f'#rows tr[data-id="{execution_id}"]')


def test_an_invoked_execution_appears_in_the_open_list_within_2s_of_starting(
    address, spawn_worker, dashboard, page, artifacts
):
    spawn_worker(address, TASKS)
    with Client(address) as client:
        client.wait(client.invoke("dash-steps", {"delay": 0}), timeout=60)  # warm the pool
        page.goto(f"{dashboard}/executions?task=dash-steps")
        page.wait_for_selector("#live-status")
        page.wait_for_function("document.getElementById('rows').children.length >= 1")
        page.wait_for_timeout(300)  # the stream is open (its first event came)
        execution_id = client.invoke("dash-steps", {"hold": 1.5, "delay": 0.3})
        _row(page, execution_id).wait_for()  # no reload: the rows were swapped in
        seen = datetime.now(UTC)
        started = wait_for(lambda: client.get(execution_id).started_at,
                           what="the execution to start")
        shown_after = (seen - started).total_seconds()
        (artifacts / "live-latency.txt").write_text(f"{shown_after:.3f} s after start\n")
        assert shown_after <= LIVE_WITHIN, f"shown {shown_after:.2f}s after it started"
        # the state follows live too, to the end
        page.locator(f'#rows tr[data-id="{execution_id}"][data-state="succeeded"]').wait_for()
        assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
        page.screenshot(path=str(artifacts / "dashboard-executions.png"), full_page=True)


def test_the_detail_shows_the_steps_in_order_with_their_durations(
    address, spawn_worker, dashboard, page, artifacts
):
    spawn_worker(address, TASKS)
    with Client(address) as client:
        parent = client.invoke("dash-steps", {"delay": 0.3, "order": 42})
        client.wait(parent, timeout=60)
        page.goto(f"{dashboard}/executions/{parent}")
        steps = page.locator("li.step")
        assert [steps.nth(i).get_attribute("data-step") for i in range(steps.count())] == [
            "fetch", "transform", "store"]
        took = [_seconds(t) for t in page.locator("li.step .took").all_inner_texts()]
        assert all(t >= 0.25 for t in took), took  # each step's function sleeps 0.3 s
        assert page.locator("#state").inner_text() == "succeeded"
        assert '"order": 42' in page.locator("#payload pre").inner_text()
        assert '"stored": true' in page.locator("#outcome pre").inner_text()
        assert page.locator("#attempts tr.attempt").count() == 1
        page.screenshot(path=str(artifacts / "dashboard-execution.png"), full_page=True)

        failed = client.invoke("dash-fail", {"n": 1})
        client.wait(failed, timeout=60)
        page.goto(f"{dashboard}/executions/{failed}")
        assert "ValueError" in page.locator("#outcome").inner_text()
        assert "Traceback" in page.locator("#outcome pre.traceback").inner_text()


def _seconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+) (ms|s|min.*)", text.strip()).groups()  # type: ignore[union-attr]
    return float(number) / 1000 if unit == "ms" else float(number)


def test_the_cancel_button_cancels_a_running_execution(
    address, spawn_worker, dashboard, page, artifacts
):
    spawn_worker(address, TASKS)
    with Client(address) as client:
        execution_id = client.invoke("dash-hang")
        page.goto(f"{dashboard}/executions/{execution_id}")
        page.locator("#state", has_text="running").wait_for()  # live: pending -> running
        page.on("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Cancel").click()
        page.locator("#state", has_text="cancelled").wait_for()
        assert client.get(execution_id).state == "cancelled"
        page.screenshot(path=str(artifacts / "dashboard-cancelled.png"), full_page=True)


def test_a_filter_narrows_the_list(address, spawn_worker, dashboard, page):
    spawn_worker(address, TASKS).stop()  # registered; nothing runs, so states stay
    with Client(address) as client:
        ids = client.invoke_batch("dash-steps", [{"customer": {"id": i % 3}} for i in range(9)])
        other = client.invoke("dash-fail", {"customer": {"id": 1}})
        page.goto(f"{dashboard}/executions")
        assert page.locator("#rows tr[data-id]").count() == 10
        page.select_option("select[name=task]", "dash-steps")
        page.fill("input[name=payload]", "customer.id=1")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url(re.compile(r"payload=customer.id%3D1"))
        shown = page.locator("#rows tr[data-id]").evaluate_all(
            "rows => rows.map(r => r.dataset.id)")
        assert shown == [ids[7], ids[4], ids[1]] and other not in shown

        page.fill("input[name=payload]", "customer")  # not key=value
        page.get_by_role("button", name="Filter").click()
        assert page.locator(".message.error").inner_text().startswith("payload:")
        assert page.locator("input[name=payload]").get_attribute("aria-invalid") == "true"


def test_the_invoke_form_creates_an_execution_and_refuses_bad_input(
    address, spawn_worker, dashboard, page, artifacts
):
    spawn_worker(address, TASKS)
    with Client(address) as client:
        page.goto(f"{dashboard}/invoke")
        page.fill("input[name=task]", "dash-steps")
        page.fill("textarea[name=payload]", '{"delay": 0, "from": "the form"}')
        page.screenshot(path=str(artifacts / "dashboard-invoke.png"), full_page=True)
        page.get_by_role("button", name="Invoke").click()
        page.wait_for_url(re.compile(r"/executions/\d+"))
        execution_id = page.url.split("/executions/")[1].split("?")[0]
        made = client.wait(execution_id, timeout=60)
        assert (made.task, made.payload, made.state) == (
            "dash-steps", {"delay": 0, "from": "the form"}, "succeeded")
        count = len(client.list(limit=None))

        page.goto(f"{dashboard}/invoke")
        page.fill("input[name=task]", "dash-steps")
        page.fill("textarea[name=payload]", '{"delay": 0,')
        response = _submit(page)
        assert response.status == 400
        assert page.locator("#form-error").inner_text().startswith("payload: not valid JSON")
        assert page.locator("textarea[name=payload]").input_value() == '{"delay": 0,'  # kept

        page.fill("input[name=task]", "no-such-task")
        page.fill("textarea[name=payload]", "{}")
        response = _submit(page)
        assert response.status == 400
        assert page.locator("#form-error").inner_text().startswith("task:")
        assert "no-such-task" in page.locator("#form-error").inner_text()
        page.screenshot(path=str(artifacts / "dashboard-invoke-error.png"), full_page=True)
        assert len(client.list(limit=None)) == count  # nothing written


def _submit(page: Any) -> Any:
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name="Invoke").click()
    return navigation.value


def test_bulk_retry_of_the_failed_runs_the_filter_shows(
    address, spawn_worker, dashboard, page, artifacts, tmp_path: Path
):
    spawn_worker(address, TASKS)
    gate = tmp_path / "gate"
    with Client(address) as client:
        failing = client.invoke_batch("dash-gated", [{"gate": str(gate)} for _ in range(3)])
        untouched = client.invoke("dash-fail", "stays failed")
        for execution_id in [*failing, untouched]:
            assert client.wait(execution_id, timeout=60).state == "failed"
        gate.write_text("open")
        page.goto(f"{dashboard}/executions?task=dash-gated&state=failed")
        assert page.locator("#rows tr[data-id]").count() == 3
        page.get_by_role("button", name="Bulk retry…").click()
        assert "3" in page.locator("#bulk-count b").first.inner_text()
        page.screenshot(path=str(artifacts / "dashboard-bulk-confirm.png"), full_page=True)
        page.get_by_role("button", name="Yes, retry 3").click()
        assert "retry: 3 of 3" in page.locator(".message.notice").inner_text()
        for execution_id in failing:
            done = client.wait(execution_id, timeout=60)
            assert done.state == "succeeded"
            assert [a.outcome for a in client.attempts(execution_id)] == ["failed", "succeeded"]
        assert client.get(untouched).state == "failed"
        page.locator("#rows tr.empty").wait_for()  # live: none of them is failed any more


def test_overview_workers_schedules_queues_and_the_login(
    address, spawn_worker, start_dashboard, page, artifacts
):
    spawn_worker(address, TASKS)
    url = start_dashboard(login_token=TOKEN)
    with Client(address) as client:
        for execution_id in client.invoke_batch("dash-steps", [{"delay": 0}] * 5):
            client.wait(execution_id, timeout=60)
        client.wait(client.invoke("dash-fail", 1), timeout=60)
        client.schedule("dash-steps", "nightly", "0 2 * * *", payload={"delay": 0})
        response = page.goto(f"{url}/workers")
        assert response.status == 401
        page.get_by_role("link", name="Log in").click()
        page.fill("input[name=token]", TOKEN)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{url}/workers")
        assert page.locator("#workers tr[data-worker]").count() == 1
        page.screenshot(path=str(artifacts / "dashboard-workers.png"), full_page=True)
        page.goto(f"{url}/")
        row = page.locator('#tasks tr[data-task="dash-steps"]')
        assert row.locator("td").nth(4).inner_text() == "5"  # succeeded in the last hour
        assert page.locator('#tasks tr[data-task="dash-fail"] td').nth(3).inner_text() == "1"
        assert page.locator("[data-unserved]").count() == 0
        page.screenshot(path=str(artifacts / "dashboard-overview.png"), full_page=True)
        page.goto(f"{url}/schedules")
        assert "0 2 * * *" in page.locator("#schedules").inner_text()
        page.goto(f"{url}/queues")
        assert "dash-hang" in page.locator("#queues").inner_text()
        assert TOKEN not in page.content()


def test_a_task_no_worker_serves_is_warned_about(address, spawn_worker, dashboard, page):
    spawn_worker(address, TASKS).stop()
    with Client(address) as client:
        client.invoke("dash-steps", {"delay": 0})
        page.goto(f"{dashboard}/")
        assert page.locator('[data-unserved="dash-steps"]').count() == 1


def test_the_detail_says_why_a_pending_execution_is_not_running(
    address, spawn_worker, dashboard, page, artifacts
):
    spawn_worker(address, TASKS).stop()  # registers the tasks, then nobody serves them
    with Client(address) as client:
        waiting = client.invoke("dash-steps", {"delay": 0})
        later = client.invoke("dash-steps", {"delay": 0}, delay=3600)
    page.goto(f"{dashboard}/executions/{waiting}")
    why = page.locator("#why")
    assert why.get_attribute("data-reason") == "no_worker"
    assert "dash-steps" in why.inner_text()
    page.screenshot(path=str(artifacts / "dashboard-why-not-running.png"), full_page=True)
    page.goto(f"{dashboard}/executions/{later}")
    assert page.locator("#why").get_attribute("data-reason") == "run_at"
    assert "until" in page.locator("#why").inner_text()
