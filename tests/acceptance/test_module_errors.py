"""A task module that cannot be imported stops `conductor worker` and `conductor dev` with one
line naming the module, the error and where, before anything starts: no connection to the
coordinator, no embedded database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

pytestmark = pytest.mark.acceptance

CLI = [sys.executable, "-m", "conductor_cli"]


@pytest.fixture
def broken(tmp_path):
    (tmp_path / "broken_tasks.py").write_text("import os\n\nimport no_such_dependency\n")
    (tmp_path / "syntax_tasks.py").write_text("def f(:\n    pass\n")
    return tmp_path


def _run(folder, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDUCTOR_")}
    return subprocess.run([*CLI, *args], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def _one_line(result) -> str:
    assert result.returncode == 1, result.stderr
    err = result.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_worker_stops_in_one_line_without_connecting(broken):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        err = _one_line(_run(broken, "worker", "broken_tasks", "--server", address))
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):  # nobody connected (a connection would wait here)
            listener.accept()
    assert err.startswith("conductor worker: cannot import the task module 'broken_tasks': "
                          "ModuleNotFoundError: No module named 'no_such_dependency' (at ")
    assert "broken_tasks.py:3)" in err
    syntax = _one_line(_run(broken, "worker", "syntax_tasks", "--server", address))
    assert "'syntax_tasks': SyntaxError: " in syntax and "line 1" in syntax


def test_dev_stops_in_one_line_before_the_embedded_database_starts(broken):
    data = broken / "data"
    err = _one_line(_run(broken, "dev", "broken_tasks", "--port", "0", "--data-dir", str(data)))
    assert "cannot import the task module 'broken_tasks'" in err
    assert not data.exists()
    debug = _run(broken, "--log-level", "debug", "worker", "broken_tasks")
    assert debug.returncode == 1 and "Traceback" in debug.stderr  # the details, when asked
