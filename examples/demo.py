"""Conductor end to end on the embedded database, using only public pieces.

Run it from the repository root:

    .venv/bin/python examples/demo.py

What it does:

1. starts `python -m conductor_worker dev examples.tasks --port 0 --data-dir .conductor` as a
   child process: an embedded PostgreSQL (kept in `.conductor/` so later runs reuse it), a
   coordinator on a free port and a worker for the tasks in examples/tasks.py;
2. reads the child's stdout until it prints the coordinator's address;
3. invokes a few example tasks with the Python `Client` and waits for each one, watching
   `flaky` as it goes: its first attempt fails and is retried about a second later;
4. stops the child with SIGINT (what Ctrl-C sends) and waits for it to exit.

It exits 0 only if every execution succeeded with the expected result and the dev process
stopped cleanly. Every wait has a deadline, so it never hangs. The dev process's log is
written to `<data dir>/demo-dev.log`; its last lines are printed when something goes wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
READY_PREFIX = "conductor dev: coordinator on "
READY_SUFFIX = "; Ctrl-C stops"

# (task, payload, check of the result or None to accept any result)
INVOCATIONS: list[tuple[str, Any, Callable[[Any], bool] | None]] = [
    ("add", {"a": 2, "b": 3}, lambda r: r == 5),
    ("process-dataset", {"count": 5}, lambda r: r == {"processed": 5}),
    ("flaky", None, lambda r: r == "succeeded on attempt 2"),
    ("sleepy", 0.5, lambda r: isinstance(r, int | float) and r >= 0.45),
]


class DemoError(Exception):
    """Something went wrong; the message says what."""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=ROOT / ".conductor",
        help="folder of the embedded PostgreSQL (default: .conductor/ in the repository)",
    )
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=180.0,
        help="seconds to wait for the coordinator to come up (default 180; the very first "
        "run initialises the database)",
    )
    parser.add_argument(
        "--wait-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for each execution (default 60)",
    )
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=30.0,
        help="seconds to wait for the dev process to exit after SIGINT (default 30)",
    )
    return parser.parse_args()


def start_dev(data_dir: Path, log: IO[bytes]) -> subprocess.Popen[bytes]:
    """Start `conductor dev` for examples.tasks on the embedded database."""
    env = dict(os.environ)
    env.pop("CONDUCTOR_DATABASE_URL", None)  # make sure the embedded database is used
    env["PYTHONUNBUFFERED"] = "1"
    command = [
        sys.executable,
        "-m",
        "conductor_worker",
        "dev",
        "examples.tasks",
        "--port",
        "0",
        "--data-dir",
        str(data_dir),
    ]
    print(f"$ {' '.join(command)}", flush=True)
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log,
        start_new_session=True,  # Ctrl-C in the terminal reaches only this script
    )


def pump_stdout(process: subprocess.Popen[bytes], lines: queue.Queue[str | None]) -> None:
    """Copy the child's stdout lines into a queue (None at end of file)."""
    assert process.stdout is not None
    for raw in process.stdout:
        lines.put(raw.decode(errors="replace").rstrip("\n"))
    lines.put(None)


def wait_for_address(
    process: subprocess.Popen[bytes], lines: queue.Queue[str | None], timeout: float
) -> str:
    """Read the child's stdout until the ready line; return HOST:PORT."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise DemoError(f"the coordinator did not start within {timeout:g}s")
        try:
            line = lines.get(timeout=min(left, 1.0))
        except queue.Empty:
            continue
        if line is None:
            code = process.wait(10)
            raise DemoError(f"the dev process exited with code {code} before it was ready")
        print(f"  dev: {line}", flush=True)
        if line.startswith(READY_PREFIX) and line.endswith(READY_SUFFIX):
            return line[len(READY_PREFIX) : -len(READY_SUFFIX)]


def invoke(client: Any, task: str, payload: Any, register_timeout: float) -> str:
    """Invoke `task`; while the worker has not registered it yet (NOT_FOUND), try again."""
    from conductor_worker import TaskNotFound

    deadline = time.monotonic() + register_timeout
    while True:
        try:
            return str(client.invoke(task, payload))
        except TaskNotFound:
            # `conductor dev` prints its address before its worker has registered the tasks;
            # on a fresh database the coordinator does not know them until then.
            if time.monotonic() > deadline:
                raise DemoError(
                    f"task {task!r} is still unknown to the coordinator after "
                    f"{register_timeout:.0f}s: did the worker start?"
                ) from None
            time.sleep(0.2)


def watch(client: Any, task: str, execution_id: str, timeout: float) -> None:
    """Print each change of the execution's state, attempt or error until it is finished:
    for `flaky`, its failed first attempt waiting for the retry."""
    deadline = time.monotonic() + timeout
    seen: tuple[Any, ...] | None = None
    while time.monotonic() < deadline:
        execution = client.get(execution_id)
        error = execution.error and f"{execution.error.type}: {execution.error.message}"
        now = (execution.state, execution.attempt, error)
        if now != seen:
            seen = now
            line = f"  watch {task:<10} {execution.state:<10} attempt {execution.attempt}"
            if error and not execution.finished:
                line += f"  attempt {execution.attempt} failed ({error}); a retry follows"
            print(line, flush=True)
        if execution.finished:
            return
        time.sleep(0.05)


def run_tasks(address: str, wait_timeout: float) -> bool:
    """Invoke the example tasks, wait for them, print one line each; True if all good."""
    from conductor_worker import Client

    all_good = True
    with Client(address, timeout=10) as client:
        started = [
            (task, payload, check, invoke(client, task, payload, register_timeout=60))
            for task, payload, check in INVOCATIONS
        ]
        for task, payload, _check, execution_id in started:
            print(f"invoked {task:<16} payload={json.dumps(payload):<20} id={execution_id}")
        print()
        for task, _payload, _check, execution_id in started:
            if task == "flaky":
                watch(client, task, execution_id, wait_timeout)
        print()
        for task, _payload, check, execution_id in started:
            try:
                execution = client.wait(execution_id, timeout=wait_timeout)
            except TimeoutError as exc:
                print(f"{task:<16} TIMEOUT    {exc}")
                all_good = False
                continue
            line = (
                f"{task:<16} {execution.state:<10} attempt {execution.attempt}/"
                f"{execution.max_attempts}  result={json.dumps(execution.result)}"
            )
            if execution.error is not None:
                line += f"  last error={execution.error.type}: {execution.error.message}"
            if execution.state != "succeeded":
                all_good = False
            elif check is not None and not check(execution.result):
                line += "  <-- unexpected result"
                all_good = False
            print(line, flush=True)
    return all_good


def stop_dev(process: subprocess.Popen[bytes], timeout: float) -> int | None:
    """SIGINT, then wait up to `timeout`; SIGKILL if it hangs. Returns the exit code."""
    if process.poll() is not None:
        return process.returncode
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        print(
            f"error: the dev process did not exit {timeout:g}s after SIGINT; killing it",
            file=sys.stderr,
        )
        process.kill()
        process.wait(10)
        return None


def print_log_tail(path: Path, lines: int = 30) -> None:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return
    print(f"--- last {lines} lines of {path} ---", file=sys.stderr)
    for line in text[-lines:]:
        print(line, file=sys.stderr)
    print("---", file=sys.stderr)


def _terminated(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM: clean up like Ctrl-C


def main() -> int:
    args = parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    signal.signal(signal.SIGTERM, _terminated)
    data_dir = args.data_dir.resolve()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"error: cannot create the data dir {data_dir}: {exc}", file=sys.stderr)
        return 1
    log_path = data_dir / "demo-dev.log"
    ok = False
    with log_path.open("wb") as log:
        process = start_dev(data_dir, log)
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=pump_stdout, args=(process, lines), daemon=True).start()
        try:
            address = wait_for_address(process, lines, args.startup_timeout)
            print(f"coordinator is at {address}\n", flush=True)
            ok = run_tasks(address, args.wait_timeout)
        except DemoError as exc:
            print(f"error: {exc}", file=sys.stderr)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
        except Exception as exc:
            print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        finally:
            print("\nstopping the dev process (SIGINT) ...", flush=True)
            code = stop_dev(process, args.stop_timeout)
            print(f"dev process exited with code {code}", flush=True)
            if code != 0:
                ok = False
    if not ok:
        print_log_tail(log_path)
        print("demo FAILED", file=sys.stderr)
        return 1
    print("demo OK: every execution succeeded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
