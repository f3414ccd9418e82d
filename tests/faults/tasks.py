"""The fault suite's load: a task of five steps whose step functions record every run outside
the worker.

Each run of a step function appends one JSON line to `runs.jsonl` in $CONDUCTOR_FAULTS_RUNS
(opened with O_APPEND; one small write() per line, so lines from many processes never
interleave). A handler start is recorded too: it is the first sign that a lease exists.

Lines: {"k": "start" | "step", "e": execution id, "s": step name (steps), "a": attempt,
"tok": lease token, "n": run nonce (steps), "pid": process id, "t": wall time (epoch s)}.

A step's result names the run that produced it ({"tok", "n"}), so the checks can tell which
lease wrote each recorded step; the handler returns the step results it was given back, so
they can be compared with what the database recorded.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

from conductor_worker import Context, Event, task

STEPS = ("s1", "s2", "s3", "s4", "s5")
RUNS_FILE = "runs.jsonl"
TASK = "faults.steps"
#: "processes,threads" of this worker's pool ($CONDUCTOR_FAULTS_POOL; the suite starts a
#: smaller second worker in some scenarios so that a backlog builds while the first is away)
POOL = tuple(int(n) for n in os.environ.get("CONDUCTOR_FAULTS_POOL", "2,32").split(","))

_fd: int | None = None


def _record(line: dict[str, Any]) -> None:
    global _fd
    if _fd is None:
        path = os.path.join(os.environ["CONDUCTOR_FAULTS_RUNS"], RUNS_FILE)
        _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    data = (json.dumps(line, separators=(",", ":")) + "\n").encode()
    written = os.write(_fd, data)
    if written != len(data):  # never for a few hundred bytes to a local file
        raise OSError(f"short write to the run records ({written} of {len(data)} bytes)")


def lease_token(ctx: Context) -> str:
    """The run's lease token (recorded with each run, to tell runs of one execution apart)."""
    return ctx.fencing_token


def _run_step(ctx: Context, name: str, token: str, sleep: float) -> dict[str, str]:
    nonce = uuid.uuid4().hex[:16]
    _record({"k": "step", "e": ctx.execution_id, "s": name, "a": ctx.attempt, "tok": token,
             "n": nonce, "pid": os.getpid(), "t": time.time()})
    time.sleep(sleep)
    return {"tok": token, "n": nonce}


@task(name=TASK, processes=POOL[0], threads=POOL[1], backoff=0.05, max_backoff=0.2)
def steps(event: Event, ctx: Context) -> dict[str, Any]:
    """Five steps of `event.payload["sleep"]` seconds each."""
    sleep = float(event.payload["sleep"])
    token = lease_token(ctx)
    _record({"k": "start", "e": ctx.execution_id, "a": ctx.attempt, "tok": token,
             "pid": os.getpid(), "t": time.time()})
    seen = {}
    for name in STEPS:
        seen[name] = ctx.step(name, lambda name=name: _run_step(ctx, name, token, sleep))
    return {"tok": token, "steps": seen}
