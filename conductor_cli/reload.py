"""`conductor dev --reload`: the worker runs as a child process that is restarted gracefully
whenever a Python file in the task module's folder changes.

A restart is the worker's graceful stop (SIGTERM): it takes no new leases, running
executions release at their next step or checkpoint (no attempt counted, recorded steps
kept), and a new worker started on the new code takes them up again. The watcher polls
file modification times twice a second (no dependency, works on every file system and in
containers); it looks at most at MAX_FILES files.

`python -m conductor_cli.reload PARENT_PID ARGS...` is the child: it asks the kernel to
SIGTERM it when the dev process dies (Linux), so that a killed `conductor dev` leaves no
worker behind, then runs `conductor ARGS...`.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

#: seconds between two looks at the files
POLL_INTERVAL = 0.5
#: files looked at, at most (a huge folder is cut, with a warning)
MAX_FILES = 10_000
#: folders never looked into
SKIPPED = {"__pycache__", "node_modules", "site-packages", ".venv", "venv", ".git", ".tox"}
PR_SET_PDEATHSIG = 1


def watched_folder(module_file: str | None) -> Path:
    """The folder whose files are watched: the module's own (a package's whole folder)."""
    if module_file is None:
        return Path.cwd()
    return Path(module_file).resolve().parent


def snapshot(folder: Path) -> dict[str, float]:
    """Modification times of the Python files under `folder`."""
    times: dict[str, float] = {}
    for path in _python_files(folder):
        with contextlib.suppress(OSError):  # deleted meanwhile: it counts as a change
            times[str(path)] = path.stat().st_mtime
        if len(times) >= MAX_FILES:
            log.warning("--reload: watching only the first %d files under %s", MAX_FILES, folder)
            break
    return times


def _python_files(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED and not d.startswith("."))
        for name in sorted(files):
            if name.endswith(".py"):
                yield Path(root, name)


def changed(before: dict[str, float], after: dict[str, float]) -> list[str]:
    """Files added, removed or modified."""
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


class Reloader:
    """Runs `conductor worker` as a child process; restarts it when the files change."""

    def __init__(self, folder: Path, worker_args: Sequence[str], drain_timeout: float) -> None:
        self.folder = folder
        self.worker_args = list(worker_args)
        self.drain_timeout = drain_timeout
        self.child: subprocess.Popen[bytes] | None = None

    def run(self) -> int:
        """Until interrupted (KeyboardInterrupt: Ctrl-C, or SIGTERM as the dev command maps
        it): then the worker stops gracefully and this returns its exit status."""
        files = snapshot(self.folder)
        self._start()
        reported = False
        try:
            while True:
                time.sleep(POLL_INTERVAL)
                if self.child is not None and self.child.poll() is not None and not reported:
                    reported = True  # e.g. the new code does not import: fixed by an edit
                    log.warning("--reload: the worker exited with status %d; it restarts "
                                "when a file changes", self.child.returncode)
                now = snapshot(self.folder)
                touched = changed(files, now)
                if not touched:
                    continue
                time.sleep(POLL_INTERVAL)  # let an editor finish writing
                files = snapshot(self.folder)
                shown = ", ".join(os.path.relpath(p, self.folder) for p in touched[:3])
                log.info("--reload: %s changed; restarting the worker (running executions "
                         "release at their next checkpoint)", shown)
                self._stop()
                self._start()
                reported = False
        except KeyboardInterrupt:
            return self._stop()

    def _start(self) -> None:
        command = [sys.executable, "-m", "conductor_cli.reload", str(os.getpid()),
                   *self.worker_args]
        # its own process group: a Ctrl-C in the terminal reaches only this process, which
        # then stops the worker with one SIGTERM (a second signal would not be graceful)
        self.child = subprocess.Popen(command, process_group=0)

    def _stop(self) -> int:
        child, self.child = self.child, None
        if child is None:
            return 0
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
        while True:
            try:
                # the worker releases everything itself once its drain timeout is over
                return child.wait(self.drain_timeout + 30)
            except subprocess.TimeoutExpired:
                log.error("--reload: the worker did not stop; killing it")
                child.kill()
            except KeyboardInterrupt:  # a second Ctrl-C: the worker releases everything now
                log.warning("--reload: second stop signal; the worker releases everything")
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)


def _child(argv: Sequence[str]) -> int:
    parent = int(argv[0])
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the dev process died before prctl took effect
        return 1
    from .main import main

    return main(list(argv[1:]))


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
