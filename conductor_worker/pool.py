"""One process pool per task type; survives crashing children.

Each child runs `threads` executions at a time (one by default; see child.py), with more
runs queued in its pipe so that it never waits for the parent. Pipe I/O happens on one reader
and one writer thread per child; everything else runs on the worker's event loop. When a
child dies, the runs it had started fail with the exit code or signal, the runs queued behind
them go to other children, and a new child takes its place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess
from typing import Any

from . import child as child_module
from .context import RunKey, RunSpec
from .metrics import metrics, process_died
from .pipes import MAX_BATCH, Outgoing, read_batch, write_batches
from .task import Task

log = logging.getLogger(__name__)

#: Receives every message a child sends (see child.py), plus synthesized "error" messages
#: for runs whose process died.
Handler = Callable[[tuple[Any, ...]], None]

#: runs quicker than this on average (seconds) are queued deeper in the pool's pipes
QUICK_RUN = 0.005


def describe_exit(exitcode: int | None) -> str:
    """'killed by signal SIGKILL (9)' or 'exited with code 3'."""
    if exitcode is None:
        return "disappeared"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = "unknown signal"
        return f"killed by signal {name} ({-exitcode})"
    return f"exited with code {exitcode}"


class _Child:
    def __init__(self, process: SpawnProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.inflight: deque[RunSpec] = deque()
        self.outq: queue.SimpleQueue[Outgoing] = queue.SimpleQueue()
        self.dead = False

    def send(self, message: tuple[Any, ...] | list[tuple[Any, ...]]) -> None:
        if not self.dead:
            self.outq.put(message)


class Pool:
    """The processes that run one task type."""

    def __init__(
        self,
        task: Task[..., Any],
        processes: int,
        handler: Handler,
        *,
        threads: int = 1,
        log_level: int = logging.INFO,
        log_format: str = "text",
    ) -> None:
        self.task = task
        self.processes = processes
        self.handler = handler
        self.threads = threads
        # Runs handed to a child at once: no more than it runs at a time while runs are slow
        # (a run waiting in the pool goes to whichever process frees first, never behind a
        # long run while another process idles), more once they are quick, so that short
        # tasks stream through without waiting on the parent.
        self.per_child = threads
        self.per_child_quick = 16 * threads
        self._run_seconds = 1.0  # moving average, from hand-over to outcome
        self._sent_at: dict[RunKey, float] = {}
        self.log_level = log_level
        self.log_format = log_format
        self.children: list[_Child] = []
        self.pending: deque[RunSpec] = deque()
        self.shutting_down = False
        self.stopping = False
        self._where: dict[RunKey, _Child] = {}
        #: clock syncs sent to the children and the children yet to apply each
        self._clock_waits: dict[int, tuple[set[_Child], asyncio.Future[None]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        method = os.environ.get("CONDUCTOR_START_METHOD", "spawn")
        if method not in ("spawn", "forkserver"):
            raise ValueError(f"CONDUCTOR_START_METHOD: {method!r} is not spawn or forkserver")
        self._mp: Any = multiprocessing.get_context(method)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for _ in range(self.processes):
            self._spawn()

    def _spawn(self) -> None:
        parent_conn, child_conn = self._mp.Pipe()
        process = self._mp.Process(
            target=child_module.main,
            args=(
                child_conn,
                self.task.__module__,
                self.task.__qualname__,
                self.log_level,
                self.threads,
                self.log_format,
            ),
            name=f"conductor-{self.task.name}",
            daemon=True,
        )
        process.start()
        child_conn.close()
        child = _Child(process, parent_conn)
        self.children.append(child)
        threading.Thread(target=self._reader, args=(child,), daemon=True).start()
        threading.Thread(target=self._writer, args=(child,), daemon=True).start()
        if self.shutting_down:
            child.send(("shutdown",))
        self._assign()

    async def stop(self, grace: float = 5.0) -> None:
        """Stop every child: politely, then by SIGKILL after `grace` seconds."""
        self.stopping = True
        for child in self.children:
            child.send(("stop",))
        for child in list(self.children):
            await asyncio.to_thread(child.process.join, grace)
            if child.process.is_alive():
                child.process.kill()
                await asyncio.to_thread(child.process.join, 5)
            child.outq.put(None)

    def kill(self) -> None:
        """SIGKILL every child at once (the worker is abandoning its runs)."""
        self.stopping = True
        for child in self.children:
            if child.process.is_alive():
                child.process.kill()

    # -- threads ------------------------------------------------------------------------

    def _reader(self, child: _Child) -> None:
        """Hand whatever the child sent to the loop, a batch per wake-up."""
        assert self._loop is not None
        try:
            while True:
                batch = read_batch(child.conn)
                while len(batch) < MAX_BATCH and child.conn.poll(0):
                    batch.extend(read_batch(child.conn))
                self._loop.call_soon_threadsafe(self._on_messages, child, batch)
        except (EOFError, OSError):
            child.process.join(5)
            with contextlib.suppress(RuntimeError):  # the worker's loop may be closed by now
                self._loop.call_soon_threadsafe(self._on_exit, child)
        except RuntimeError:
            return  # the worker's event loop closed while this child was still talking

    def _writer(self, child: _Child) -> None:
        """Send queued messages to the child, as many per write as are waiting."""
        write_batches(child.outq, child.conn)

    # -- runs ---------------------------------------------------------------------------

    def submit(self, spec: RunSpec) -> None:
        self.pending.append(spec)
        self._assign()

    def _assign(self) -> None:
        depth = self.per_child_quick if self._run_seconds < QUICK_RUN else self.per_child
        now = time.monotonic()
        while self.pending:
            # the least busy process with room: idle ones first, then spread evenly
            open_children = [c for c in self.children if not c.dead and len(c.inflight) < depth]
            if not open_children:
                return
            child = min(open_children, key=lambda c: len(c.inflight))
            spec = self.pending.popleft()
            child.inflight.append(spec)
            self._where[spec.key] = child
            self._sent_at[spec.key] = now
            child.send(("run", spec))

    def step_acks(self, acks: list[tuple[RunKey, str, str | None, str]]) -> None:
        """Answer step saves: (run key, name, recorded result or None, why the save was
        refused or "" if the lease is lost), one hand-over per child process."""
        by_child: dict[_Child, list[tuple[Any, ...]]] = {}
        for key, name, recorded, error in acks:
            child = self._where.get(key)
            if child is not None:
                by_child.setdefault(child, []).append(("step_ack", key, name, recorded, error))
        for child, messages in by_child.items():
            child.send(messages)

    def send_to(self, key: RunKey, message: tuple[Any, ...]) -> None:
        """Send a message to the process running the run (if it still is)."""
        child = self._where.get(key)
        if child is not None:
            child.send(message)

    def interrupt(self, key: RunKey, reason: str, run_at: float | None = None) -> None:
        """Release the run at its next checkpoint (at once if it has not started). Reason
        "lost": the lease is gone; the run is abandoned and its waits are answered now."""
        for spec in self.pending:
            if spec.key == key:
                self.pending.remove(spec)
                if reason == "lost":
                    self.handler(("abandoned", key))
                else:
                    self.handler(("released", key, reason, run_at))
                return
        child = self._where.get(key)
        if child is not None:
            child.send(("interrupt", key, reason, run_at))

    def renewed(self, until: float) -> None:
        """Every lease the worker holds is valid until `until` (time.monotonic())."""
        for child in self.children:
            child.send(("renewed", until))

    def sync_clock(self, coordinator_time: float, sequence: int) -> asyncio.Future[None]:
        """Hand a jumped coordinator clock to every child; done once those running something
        use it (a run handed over later reads it first: the pipe keeps order)."""
        assert self._loop is not None
        done: asyncio.Future[None] = self._loop.create_future()
        children = {c for c in self.children if not c.dead and c.inflight}
        if not children:
            done.set_result(None)
            return done
        self._clock_waits[sequence] = (children, done)
        message = ("clock", coordinator_time, time.monotonic(), sequence)
        for child in children:
            child.send(message)
        return done

    def _clock_applied(self, child: _Child, sequence: int) -> None:
        waiting = self._clock_waits.get(sequence)
        if waiting is None:
            return
        waiting[0].discard(child)
        if not waiting[0]:
            del self._clock_waits[sequence]
            if not waiting[1].done():
                waiting[1].set_result(None)

    def shutdown(self) -> None:
        """Release what has not started; running handlers release at their next checkpoint."""
        self.shutting_down = True
        while self.pending:
            spec = self.pending.popleft()
            self.handler(("released", spec.key, "shutdown", None))
        for child in self.children:
            child.send(("shutdown",))

    def running(self) -> list[RunKey]:
        return [s.key for c in self.children for s in c.inflight] + [
            s.key for s in self.pending
        ]

    # -- events from children -----------------------------------------------------------

    def _on_messages(self, child: _Child, batch: list[tuple[Any, ...]]) -> None:
        for message in batch:
            self._on_message(child, message)

    def _on_message(self, child: _Child, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind in ("done", "error", "released", "abandoned"):
            self._finish(child, message[1])
        if kind == "clock_ack":
            self._clock_applied(child, message[1])
        elif kind != "ready":
            self.handler(message)

    def _finish(self, child: _Child, key: RunKey) -> None:
        self._where.pop(key, None)
        sent = self._sent_at.pop(key, None)
        if sent is not None:
            self._run_seconds = 0.9 * self._run_seconds + 0.1 * (time.monotonic() - sent)
        for spec in child.inflight:
            if spec.key == key:
                child.inflight.remove(spec)
                break
        self._assign()

    def _on_exit(self, child: _Child) -> None:
        child.dead = True
        child.outq.put(None)
        if child in self.children:
            self.children.remove(child)
        for sequence in list(self._clock_waits):  # a dead child applies nothing any more
            self._clock_applied(child, sequence)
        how = describe_exit(child.process.exitcode)
        if child.process.pid is not None:
            process_died(child.process.pid)
        if not self.stopping:
            metrics().restarts.labels(self.task.name).inc()
        if child.inflight:
            log.error("pool process %s for %s %s", child.process.pid, self.task.name, how)
        # runs start in order, `threads` at a time: those had started and die with the process
        for _ in range(min(self.threads, len(child.inflight))):
            crashed = child.inflight.popleft()
            self._where.pop(crashed.key, None)
            self._sent_at.pop(crashed.key, None)
            self.handler(
                (
                    "error",
                    crashed.key,
                    "ProcessDied",
                    f"pool process {child.process.pid} {how}",
                    "",
                    True,
                )
            )
        if child.inflight:
            for spec in reversed(child.inflight):
                self._where.pop(spec.key, None)
                self.pending.appendleft(spec)
        if not self.stopping:
            self._spawn()
