"""Where pool processes come from: by default, a fork server that preloaded the task modules.

The fork server is a fresh interpreter, started by fork+exec (as `spawn` starts a child), so
it inherits none of the worker's threads. It imports `conductor_worker.child` and the task
modules once, freezes them out of the garbage collector's reach (preloaded.py), then forks
one pool process per request: children share the imported pages and start in milliseconds
instead of re-importing the application. The worker's main
process, which runs gRPC, is never forked; the fork server has a single thread when it
forks, which every child checks and reports (see `forker_threads`): a task module that
starts threads at import makes the pool fall back to `spawn` (pool.py).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
from collections.abc import Iterable
from typing import Any


def context(method: str, modules: Iterable[str]) -> Any:
    """The multiprocessing context pools start their processes with.

    The preload list is set before the fork server starts (it is one per worker process,
    started by `start`); set later, it is ignored, and children import what they need."""
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        preloaded = ["conductor_worker.child", *sorted(set(modules)), "conductor_worker.preloaded"]
        ctx.set_forkserver_preload(preloaded)
    return ctx


def start(method: str) -> None:
    """Start the fork server now, so that it imports the task modules while the worker
    connects, not when the first lease arrives."""
    if method == "forkserver":
        multiprocessing.forkserver.ensure_running()


def forker_threads() -> int:
    """Threads of this process's parent (in a pool process: whoever forked it), 0 if
    unknown. 1 for a fork server; a spawned child's parent is the worker itself."""
    try:
        return len(os.listdir(f"/proc/{os.getppid()}/task"))
    except OSError:
        return 0
