"""The dashboard's browser tests: a real coordinator and worker, the dashboard on port 0 in
a thread, and Debian's chromium driven by Playwright (its own browser downloads are not used;
.ci/run installs the `chromium` package). Screenshots go to $CONDUCTOR_TEST_ARTIFACTS
(default: the test's basetemp/screenshots); docs/dashboard.md's come from a run with
CONDUCTOR_TEST_ARTIFACTS=docs/images."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conductor_ui import UIServer, UISettings
from conductor_worker import AsyncClient

TASKS = "tests.acceptance.dashboard_tasks"
#: a page's own waits (for a row, a state) time out after this many milliseconds: generous,
#: because a loaded 2-core machine can stall any step; latency is asserted separately
PAGE_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for one test module. Not for the session: Playwright's sync API keeps an
    event loop running in the main thread while it is open, and later tests' asyncio.run()
    would refuse to start."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("chromium not on PATH (Debian package chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield launched
        launched.close()


@pytest.fixture
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("CONDUCTOR_TEST_ARTIFACTS")
    path = Path(folder) if folder else tmp_path_factory.getbasetemp() / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def start_dashboard(address: str) -> Iterator[Callable[..., str]]:
    """Start the dashboard for the test's coordinator; returns its URL."""
    servers: list[UIServer] = []

    def start(**options: Any) -> str:
        def client() -> AsyncClient:
            return AsyncClient(address, timeout=10)

        server = UIServer(UISettings(client=client, port=0, **options))
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def dashboard(start_dashboard: Callable[..., str]) -> str:
    return start_dashboard()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    opened = context.new_page()
    yield opened
    context.close()
