"""`conductor ui` and the dashboard of `conductor dev`, as processes."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.conftest import ROOT, wait_for

pytestmark = pytest.mark.acceptance
CLI = [sys.executable, "-m", "conductor_worker"]


def _get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_conductor_ui_serves_a_coordinator_and_requires_its_login_token(address, tmp_path, stop):
    token = tmp_path / "login-token"
    token.write_text("a-long-enough-login-token\n")
    log = tmp_path / "ui.log"
    ui = subprocess.Popen(
        [*CLI, "ui", "--server", address, "--host", "0.0.0.0", "--port", "0",
         "--login-token-file", str(token)],
        cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )
    try:
        found = wait_for(lambda: re.search(r"dashboard on (http://\S+) ", log.read_text())
                         or ui.poll() is not None, timeout=60, what="the dashboard's URL")
        assert ui.poll() is None, log.read_text()
        url = found.group(1).replace("0.0.0.0", "127.0.0.1")
        assert _get(f"{url}/healthz") == (200, "ok")
        assert _get(f"{url}/queues")[0] == 401
        status, page = _get(f"{url}/queues", token="a-long-enough-login-token")
        assert status == 200 and "Queues" in page
        ui.send_signal(stop)
        assert ui.wait(30) == 0, log.read_text()
    finally:
        if ui.poll() is None:
            ui.kill()


@pytest.mark.parametrize(("args", "message"), [
    (["--host", "0.0.0.0"], "--login-token-file: required when --host is not a loopback"),
    (["--login-token-file", "/no/such/file"], "--login-token-file: cannot read /no/such/file"),
    (["--refresh", "0"], "--refresh"),
    (["--port", "70000"], "--port"),
])
def test_conductor_ui_refuses_bad_options_naming_them(args, message):
    done = subprocess.run([*CLI, "ui", "--port", "0", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_conductor_dev_serves_the_dashboard_and_prints_its_url(database_url, tmp_path):
    log = tmp_path / "dev.log"
    dev = subprocess.Popen(
        [*CLI, "dev", "tests.acceptance.dashboard_tasks", "--port", "0", "--ui-port", "0",
         "--database-url", database_url],
        cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )
    try:
        found = wait_for(lambda: re.search(r"dashboard on (http://\S+)", log.read_text())
                         or dev.poll() is not None, timeout=120, what="the dashboard's URL")
        assert dev.poll() is None, log.read_text()
        url = found.group(1)
        wait_for(lambda: "coordinator on" in log.read_text(), timeout=60, what="the worker")
        status, page = _get(f"{url}/workers")
        assert status == 200 and "dash-steps" in page  # the dev worker, seen through the API
        dev.send_signal(signal.SIGINT)
        assert dev.wait(60) == 0
    finally:
        if dev.poll() is None:
            dev.kill()
