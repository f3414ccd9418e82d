"""A task module that starts a thread when imported (as some libraries do): the fork server
that preloads it must not fork pool processes (test_pools.py)."""

from __future__ import annotations

import os
import threading
import time

from conductor_worker import Context, Event, task

threading.Thread(target=lambda: time.sleep(3600), daemon=True, name="started-at-import").start()


@task(name="threaded-import")
def threaded_import(event: Event, ctx: Context) -> dict[str, int]:
    return {"pid": os.getpid(), "parent": os.getppid()}
