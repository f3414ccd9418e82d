"""Following executions live: the progress line of `invoke --wait` on a terminal, and
`conductor executions watch`.

Both poll the public API (WaitExecution, GetExecution, ListSteps, ListExecutions), bounded:
one round per interval, at most `--limit` executions per round. Polling needs nothing of the
coordinator but the API every client already has, works through any proxy, and costs one
indexed query per round; a change is seen within one interval (a state that lasts less than
that, e.g. a quick run's "running", may be skipped: the final state is always printed).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from typing import TextIO

from conductor_worker import Client, Execution

from .output import when

#: seconds between two looks at a waited-for execution
PROGRESS_INTERVAL = 0.5


def wait_with_progress(conductor: Client, execution_id: str, timeout: float | None,
                       out: TextIO = sys.stderr) -> Execution:
    """Wait for the execution; on a terminal, keep one line up to date with its state,
    steps done and attempt (cleared at the end). Quiet when `out` is not a terminal."""
    if not out.isatty():
        return conductor.wait(execution_id, timeout=timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    shown = ""
    try:
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            step = PROGRESS_INTERVAL if left is None else min(PROGRESS_INTERVAL, left)
            try:
                return conductor.wait(execution_id, timeout=step)
            except TimeoutError:
                if left is not None and left <= step:
                    raise
            execution = conductor.get(execution_id)
            steps = len(conductor.steps(execution_id))
            line = (f"{execution.id} {execution.task}: {execution.state}, {steps} steps done,"
                    f" attempt {execution.attempt}/{execution.max_attempts}")
            if line != shown:
                out.write("\r\x1b[K" + line)
                out.flush()
                shown = line
    finally:
        if shown:
            out.write("\r\x1b[K")
            out.flush()


def describe(execution: Execution) -> str:
    """One line about an execution's current state."""
    text = (f"{execution.id}  {execution.task}  {execution.state}"
            f"  attempt {execution.attempt}/{execution.max_attempts}")
    if execution.state == "pending" and execution.run_at is not None:
        text += f"  run at {when(execution.run_at)}"
    if execution.error is not None and execution.state in ("pending", "failed"):
        text += f"  {execution.error.type}: {execution.error.message.splitlines()[0][:200]}"
    return text


def watch(
    poll: Callable[[], Iterable[Execution]],
    get: Callable[[str], Execution],
    interval: float,
    emit: Callable[[str], None],
    rounds: int | None = None,
) -> None:
    """Print a line for each execution that appears or changes (state, attempt, error).
    `poll` lists the newest executions matching the filters; executions seen unfinished that
    fell off that page are read one by one until they finish (at most as many as the page)."""
    seen: dict[str, tuple[str, int, str]] = {}
    following: dict[str, None] = {}  # unfinished ones, oldest first
    done = 0
    while rounds is None or done < rounds:
        page = list(poll())
        listed = {e.id for e in page}
        stragglers = [get(i) for i in list(following)[: max(len(page), 1)] if i not in listed]
        for execution in [*reversed(page), *stragglers]:
            mark = (execution.state, execution.attempt,
                    execution.error.message if execution.error else "")
            if seen.get(execution.id) != mark:
                seen[execution.id] = mark
                emit(f"{time.strftime('%H:%M:%S')}  {describe(execution)}")
            if execution.finished:
                following.pop(execution.id, None)
            else:
                following[execution.id] = None
        for gone in [i for i in seen if i not in listed and i not in following]:
            del seen[gone]  # bounded: only what is on the page or followed
        done += 1
        if rounds is None or done < rounds:
            time.sleep(interval)
