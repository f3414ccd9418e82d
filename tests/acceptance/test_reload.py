"""`conductor dev --reload` on a real dev stack: a change to the task module restarts the
worker gracefully; the running execution is released (not failed, no attempt counted) and
completes on the new code without repeating its recorded step."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conductor_worker import Client
from tests.conftest import wait_for

pytestmark = pytest.mark.acceptance

MODULE = '''
import time

from conductor_worker import task

VERSION = {version}


def effect(path, line):
    with open(path, "a") as f:
        f.write(line + "\\n")
    return line


@task(name="reloadable", max_attempts=3)
def reloadable(event, ctx):
    path = event.payload["effects"]
    ctx.step("first", lambda: effect(path, f"first-v{{VERSION}}"))
    if VERSION == 1:
        while True:  # the old code never finishes: only a release ends its run
            ctx.checkpoint()
            time.sleep(0.05)
    return {{"version": VERSION, "attempt": ctx.attempt}}
'''


@contextlib.contextmanager
def _dev_stack(folder: Path, database_url: str) -> Iterator[tuple[str, Path]]:
    """`conductor dev reload_tasks --reload` in `folder`: its address once its worker is
    connected, and its output (dev.log); stopped with Ctrl-C at the end, which must exit 0."""
    log = folder / "dev.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("w") as sink:
        dev = subprocess.Popen(
            [sys.executable, "-m", "conductor_cli", "dev", "reload_tasks", "--reload",
             "--port", "0", "--database-url", database_url],
            cwd=folder, env=env, stdout=sink, stderr=subprocess.STDOUT,
        )
    try:
        found = wait_for(lambda: re.search(r"coordinator on (\S+:\d+)", log.read_text()),
                         timeout=120, what="the dev stack")
        wait_for(lambda: "connected to" in log.read_text(), timeout=120, what="the worker")
        yield found.group(1), log
    finally:
        dev.send_signal(signal.SIGINT)
        try:
            assert dev.wait(60) == 0, log.read_text()
        finally:
            if dev.poll() is None:
                dev.kill()


def _write_module(path: Path, version: int) -> None:
    path.write_text(MODULE.format(version=version))
    later = time.time() + version  # a new modification time whatever the clock's resolution
    os.utime(path, (later, later))


def test_a_code_change_releases_the_running_execution_and_it_completes_on_the_new_code(
    tmp_path, database_url
):
    module = tmp_path / "reload_tasks.py"
    _write_module(module, 1)
    effects = tmp_path / "effects"
    with _dev_stack(tmp_path, database_url) as (address, log), Client(address) as client:
        execution_id = client.invoke("reloadable", {"effects": str(effects)})
        wait_for(lambda: effects.exists() and "first-v1" in effects.read_text(),
                 timeout=60, what="the first run's step")
        _write_module(module, 2)
        done = client.wait(execution_id, timeout=120)
        assert (done.state, done.result) == ("succeeded", {"version": 2, "attempt": 1})
        assert effects.read_text().splitlines() == ["first-v1"]  # the step did not run again
        text = log.read_text()
        assert "--reload: reload_tasks.py changed; restarting the worker" in text
        assert (f"execution {execution_id} attempt 1/3 (reloadable): released (the worker is"
                " shutting down) after") in text
        assert "failed" not in text


def test_a_broken_edit_stops_the_worker_until_the_next_change(tmp_path, database_url):
    module = tmp_path / "reload_tasks.py"
    _write_module(module, 1)
    with _dev_stack(tmp_path, database_url) as (address, log):
        module.write_text("def broken(:\n")
        later = time.time() + 10
        os.utime(module, (later, later))
        wait_for(lambda: "the worker exited with status 1" in log.read_text(), timeout=120,
                 what="the broken worker's exit")
        assert "cannot import the task module 'reload_tasks': SyntaxError" in log.read_text()
        _write_module(module, 20)  # fixed (a later modification time again)
        wait_for(lambda: log.read_text().count("connected to") == 2, timeout=120,
                 what="the worker on the fixed code")
        with Client(address) as client:
            done = client.wait(client.invoke("reloadable", {"effects": str(tmp_path / "fx")}),
                               timeout=120)
        assert done.result == {"version": 20, "attempt": 1}
