"""One process pool per task type (or per shared pool); survives crashing children.

Each child runs `threads` executions at a time (one by default; see child.py), with more
runs queued in its pipe so that it never waits for the parent. Pipe I/O happens on one reader
and one writer thread per child; everything else runs on the worker's event loop. When a
child dies, the runs it had started fail with the exit code or signal, the runs queued behind
them go to other children, and a new child takes its place if there is work for it.

A run with a timeout (the lease's timeout_seconds) is timed from when its process starts
it: when the time is up, the process gets SIGUSR1 (it exits at once), then SIGKILL after
KILL_GRACE seconds if it is stuck where no Python code runs. That run fails with error type
Timeout; the other runs the process had started (threads > 1) are released without counting
an attempt (reason process_stopped); the runs queued behind them go to other processes.

Pools start on demand: a pool has `min_processes` children from the start (none by default),
starts another one whenever runs wait and every child is busy, up to `processes`, and stops
a child that has had nothing to run for `idle_timeout` seconds, down to `min_processes`.
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
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess
from typing import Any

from . import child as child_module
from .batching import Gathering, batch_of
from .context import RunKey, RunSpec
from .errors import TaskDefinitionError
from .metrics import ENV as METRICS_ENV
from .metrics import metrics, process_died
from .pipes import MAX_BATCH, Outgoing, read_batch, write_batches
from .settings import PoolSettings
from .task import Task

log = logging.getLogger(__name__)

#: Receives every message a child sends (see child.py), plus synthesized "error" messages
#: for runs whose process died.
Handler = Callable[[tuple[Any, ...]], None]

#: runs quicker than this on average (seconds) are queued deeper in the pool's pipes
QUICK_RUN = 0.005
#: held while a pool process starts and while a reader thread collects a dead one's exit
#: status: Process.start() polls every child multiprocessing knows, and a fork server
#: child's status can be read once only (a second reader would record 255 instead)
_PROCESSES = threading.Lock()
#: seconds a timed-out run's process has to exit after SIGUSR1 before it gets SIGKILL
KILL_GRACE = 1.0


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


def pool_groups(tasks: Sequence[Task[..., Any]]) -> dict[str, list[Task[..., Any]]]:
    """The worker's pools, by name: a shared pool's tasks under its name, every other task
    alone under its own name. Raises TaskDefinitionError for pools that cannot work."""
    groups: dict[str, list[Task[..., Any]]] = {}
    for t in tasks:
        groups.setdefault(t.options.pool or t.name, []).append(t)
    for name, members in groups.items():
        if len(members) > 1 and any(t.options.pool is None for t in members):
            raise TaskDefinitionError(
                f"pool {name!r} is also the name of a task with its own pool; rename one")
        if len({t.is_async for t in members}) > 1:
            plain = sorted(t.name for t in members if not t.is_async)
            both = sorted(t.name for t in members if t.is_async)
            raise TaskDefinitionError(
                f"pool {name!r} mixes async def handlers {both} with plain ones {plain};"
                " give them different pools")
    return groups


def _ended_with(child: _Child, run: RunKey, how: str, key: RunKey) -> tuple[Any, ...]:
    """How the lease `key` of a run ends whose process died: the run's timeout, another
    run's timeout (released without an attempt), or the process's death."""
    pid = child.process.pid
    if run in child.timed_out:
        return ("error", key, "Timeout", f"execution timeout: still running after"
                f" {child.timed_out[run]:g}s; pool process {pid} stopped", "", True)
    if child.timed_out:
        return ("released", key, "process_stopped", None)
    return ("error", key, "ProcessDied", f"pool process {pid} {how}", "", True)


class _Child:
    def __init__(self, process: SpawnProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.inflight: deque[RunSpec] = deque()
        self.outq: queue.SimpleQueue[Outgoing] = queue.SimpleQueue()
        self.dead = False
        #: told to stop because it was idle: it gets no more runs
        self.retiring = False
        #: time.monotonic() when it last had nothing to run (meaningful while it has none)
        self.idle_since = time.monotonic()
        #: set once process.start() returned (or failed), on the thread that starts it
        self.launched = threading.Event()
        #: its runs that exceeded their timeout (it is being stopped): key -> the timeout
        self.timed_out: dict[RunKey, float] = {}

    def send(self, message: tuple[Any, ...] | list[tuple[Any, ...]]) -> None:
        if not self.dead:
            self.outq.put(message)


class Pool:
    """The processes that run one task type, or the tasks of one shared pool."""

    def __init__(
        self,
        tasks: Sequence[Task[..., Any]],
        handler: Handler,
        *,
        name: str | None = None,
        settings: PoolSettings | None = None,
        log_level: int = logging.INFO,
        on_handed: Callable[[RunKey], None] | None = None,
        log_format: str = "text",
    ) -> None:
        self.tasks = list(tasks)
        self.name = name or self.tasks[0].name
        settings = settings or PoolSettings()
        self.processes = max(t.options.processes for t in self.tasks)
        self.min_processes = max(t.options.min_processes for t in self.tasks)
        self.threads = max(t.options.threads for t in self.tasks)
        self.idle_timeout = settings.idle_timeout
        self.start_method = settings.start_method
        self.handler = handler
        #: told which queued runs were just handed to a process (may start from now on)
        self.on_handed = on_handed
        # Runs handed to a child at once: no more than it runs at a time while runs are slow
        # (a run waiting in the pool goes to whichever process frees first, never behind a
        # long run while another process idles), more once they are quick, so that short
        # tasks stream through without waiting on the parent.
        self.per_child = self.threads
        self.per_child_quick = 16 * self.threads
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
        self._mp: Any = multiprocessing.get_context(self.start_method)
        #: what a child started now must know first: the newest lease renewal and clock sync
        self._renewed_until = 0.0
        self._clock: tuple[float, float] | None = None
        #: the latest upper bound of the coordinator's clock (see RunSpec.coordinator_now)
        self._bound: tuple[float, float] | None = None
        self._reap_handle: asyncio.TimerHandle | None = None
        #: the timeout timers of runs started by a process, by run key
        self._timers: dict[RunKey, asyncio.TimerHandle] = {}
        #: batch tasks' leases waiting to fill a batch (see batching.py), by task name
        self._gathering = {
            t.name: Gathering(t.options.batch, t.options.batch_wait)
            for t in self.tasks if t.options.batch
        }
        #: processes started so far (for tests and the benchmark)
        self.started = 0

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the processes kept warm (`min_processes`); the others start on demand."""
        self._loop = asyncio.get_running_loop()
        self._keep_warm()

    def live(self) -> list[_Child]:
        """Children that take runs (started, not dead, not stopping for idleness)."""
        return [c for c in self.children if not c.dead and not c.retiring]

    def _keep_warm(self) -> None:
        while not self.stopping and len(self.live()) < self.min_processes:
            self._spawn()

    def _spawn(self) -> _Child:
        parent_conn, child_conn = self._mp.Pipe()
        process = self._mp.Process(
            target=child_module.main,
            args=(
                child_conn,
                [(t.__module__, t.__qualname__) for t in self.tasks],
                self.log_level,
                self.threads,
                os.environ.get(METRICS_ENV),
                self.start_method == "forkserver",
                self.log_format,
            ),
            name=f"conductor-{self.name}",
            daemon=True,
        )
        self.started += 1
        child = _Child(process, parent_conn)
        self.children.append(child)
        threading.Thread(target=self._start, args=(child, child_conn), daemon=True).start()
        if self._clock is not None:
            child.send(("clock", *self._clock, None))
        if self._renewed_until:
            child.send(("renewed", self._renewed_until, self._bound))
        if self.shutting_down:
            child.send(("shutdown",))
        return child

    def _schedule_reap(self) -> None:
        """Arm the idle timer for the child idle the longest (if it may stop)."""
        if self.idle_timeout <= 0 or self._reap_handle is not None or self._loop is None:
            return
        live = self.live()
        idle = [c.idle_since for c in live if not c.inflight]
        if self.stopping or len(live) <= self.min_processes or not idle:
            return
        delay = max(0.0, min(idle) + self.idle_timeout - time.monotonic())
        self._reap_handle = self._loop.call_later(delay, self._reap)

    def _reap(self) -> None:
        """Stop the children idle for `idle_timeout`, longest idle first, down to the
        minimum. A stopping child gets no more runs and exits at once (it has none)."""
        self._reap_handle = None
        now = time.monotonic()
        live = self.live()
        excess = len(live) - self.min_processes
        for child in sorted(live, key=lambda c: c.idle_since):
            if excess <= 0:
                break
            if not child.inflight and now - child.idle_since >= self.idle_timeout:
                child.retiring = True
                child.send(("stop",))
                excess -= 1
        self._schedule_reap()

    async def stop(self, grace: float = 5.0) -> None:
        """Stop every child: politely, then by SIGKILL after `grace` seconds."""
        self.stopping = True
        if self._reap_handle is not None:
            self._reap_handle.cancel()
            self._reap_handle = None
        for child in self.children:
            child.send(("stop",))
        for child in list(self.children):
            await asyncio.to_thread(child.launched.wait, grace)
            if child.process.pid is None:  # it never started
                continue
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

    def _start(self, child: _Child, child_conn: Connection) -> None:
        """Start the process off the event loop (the fork server may still be importing the
        task modules; spawn writes the child its start-up data), then read what it sends."""
        assert self._loop is not None
        try:
            with _PROCESSES:
                child.process.start()
        except Exception:
            log.exception("pool %s: a pool process could not start", self.name)
            child.conn.close()
            with contextlib.suppress(RuntimeError):  # the worker's loop may be closed by now
                self._loop.call_soon_threadsafe(self._on_exit, child)
            return
        finally:
            child_conn.close()
            child.launched.set()
        threading.Thread(target=self._writer, args=(child,), daemon=True).start()
        self._reader(child)

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
            with _PROCESSES:
                child.process.join(5)
            with contextlib.suppress(RuntimeError):  # the worker's loop may be closed by now
                self._loop.call_soon_threadsafe(self._on_exit, child)
        except RuntimeError:
            return  # the worker's event loop closed while this child was still talking

    def _writer(self, child: _Child) -> None:
        """Send queued messages to the child, as many per write as are waiting."""
        write_batches(child.outq, child.conn)

    # -- runs ---------------------------------------------------------------------------

    def submit(self, spec: RunSpec) -> bool:
        """Queue a run; True if it went to a process at once, False if it waits for room.
        Queued runs start by priority, highest first, in arrival order within one. A batch
        task's lease waits for its batch to fill (or for batch_wait)."""
        gathering = self._gathering.get(spec.task)
        if gathering is not None and not spec.items:
            if gathering.add(spec):
                self._flush_batch(spec.task)
            elif gathering.timer is None and self._loop is not None:
                gathering.timer = self._loop.call_later(
                    gathering.wait, self._flush_batch, spec.task)
            return False
        return self._queue(spec)

    def _flush_batch(self, task: str) -> None:
        specs = self._gathering[task].take()
        if specs:
            self._queue(batch_of(specs))

    def _queue(self, spec: RunSpec) -> bool:
        if self.pending and self.pending[-1].priority < spec.priority:
            at = next(i for i, s in enumerate(self.pending) if s.priority < spec.priority)
            self.pending.insert(at, spec)
            self._assign()
            return all(s is not spec for s in self.pending)
        self.pending.append(spec)
        self._assign()
        return not self.pending or self.pending[-1] is not spec

    def _assign(self) -> None:
        depth = self.per_child_quick if self._run_seconds < QUICK_RUN else self.per_child
        now = time.monotonic()
        while self.pending:
            # the least busy process with room: idle ones first, then spread evenly
            open_children = [c for c in self.children
                             if len(c.inflight) < depth and not (c.dead or c.retiring)]
            if not open_children:
                # every process is busy: start another one, up to the pool's maximum
                if self.stopping or len(self.live()) >= self.processes:
                    return
                open_children = [self._spawn()]
            child = min(open_children, key=lambda c: len(c.inflight))
            spec = self.pending.popleft()
            child.inflight.append(spec)
            self._where[spec.key] = child
            for key in spec.keys:
                self._where[key] = child
            self._sent_at[spec.key] = now
            if self.on_handed is not None:  # before the process can have it
                for key in spec.keys:
                    self.on_handed(key)
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
        gathered = self._gathered_task(key)
        if gathered is not None:  # waiting for its batch to fill: it leaves the batch
            self._gathering[gathered].remove(key)
            self.handler(("abandoned", key) if reason == "lost"
                         else ("released", key, reason, run_at))
            return
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

    def renewed(self, until: float, bound: tuple[float, float] | None) -> None:
        """Every lease the worker holds is valid until `until` (time.monotonic()); the
        coordinator's clock is at most `bound` (its time, time.monotonic() then)."""
        self._renewed_until = max(self._renewed_until, until)
        if bound is not None:
            self._bound = bound
        for child in self.children:
            child.send(("renewed", until, bound))

    def sync_clock(self, coordinator_time: float, sequence: int) -> asyncio.Future[None]:
        """Hand a jumped coordinator clock to every child; done once those running something
        use it (a run handed over later reads it first: the pipe keeps order)."""
        assert self._loop is not None
        done: asyncio.Future[None] = self._loop.create_future()
        self._clock = (coordinator_time, time.monotonic())  # for children started later
        self._bound = None  # readings from before a jump no longer count
        children = {c for c in self.children if not c.dead and c.inflight}
        for child in self.children:  # idle ones too: their clock bound is out of date
            if not child.dead:
                child.send(("clock", *self._clock, sequence if child in children else None))
        if not children:
            done.set_result(None)
            return done
        self._clock_waits[sequence] = (children, done)
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

    def _gathered_task(self, key: RunKey) -> str | None:
        for task, gathering in self._gathering.items():
            if any(s.key == key for s in gathering.specs):
                return task
        return None

    def shutdown(self) -> None:
        """Release what has not started; running handlers release at their next checkpoint."""
        self.shutting_down = True
        for gathering in self._gathering.values():
            for spec in gathering.take():
                self.handler(("released", spec.key, "shutdown", None))
        while self.pending:
            spec = self.pending.popleft()
            for key in spec.keys:
                self.handler(("released", key, "shutdown", None))
        for child in self.children:
            child.send(("shutdown",))

    def running(self) -> list[RunKey]:
        return [k for c in self.children for s in c.inflight for k in s.keys] + [
            k for s in self.pending for k in s.keys
        ] + [s.key for g in self._gathering.values() for s in g.specs]

    # -- events from children -----------------------------------------------------------

    def _on_messages(self, child: _Child, batch: list[tuple[Any, ...]]) -> None:
        for message in batch:
            self._on_message(child, message)

    def _on_message(self, child: _Child, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind in ("done", "error", "released", "abandoned"):
            self._finish(child, message[1])
        if kind == "started":
            self._arm_timeout(child, message[1], message[2])
        elif kind == "batch_done":
            self._finish(child, message[1])
        elif kind == "clock_ack":
            self._clock_applied(child, message[1])
        elif kind == "ready":
            self._on_ready(child, message[2])
        else:
            self.handler(message)

    def _on_ready(self, child: _Child, forker_threads: int) -> None:
        """A forked child reports how many threads the process that forked it had. More
        than one (a task module started threads at import in the fork server): the child
        exits without running anything, its runs go back to the pool, and the pool starts
        its processes by spawn, which never forks a threaded process."""
        if self.start_method != "forkserver" or forker_threads <= 1:
            return
        log.warning(
            "pool %s: the fork server had %d threads when it forked process %s (a task"
            " module starts threads at import?); starting this pool's processes by spawn",
            self.name, forker_threads, child.process.pid)
        self.start_method = "spawn"
        self._mp = multiprocessing.get_context("spawn")
        child.retiring = True
        for spec in reversed(child.inflight):  # never started: that child runs nothing
            self._where.pop(spec.key, None)
            self.pending.appendleft(spec)
        child.inflight.clear()
        self._assign()

    def _arm_timeout(self, child: _Child, key: RunKey, started: float) -> None:
        """A run with a timeout started at `started` (time.monotonic(), one clock for all
        processes): stop its process when the time is up."""
        spec = next((s for s in child.inflight if s.key == key), None)
        if spec is None or not spec.timeout or self._loop is None:
            return  # it ended already
        delay = max(0.0, started + spec.timeout - time.monotonic())
        self._timers[key] = self._loop.call_later(
            delay, self._time_out, child, key, spec.timeout)

    def _time_out(self, child: _Child, key: RunKey, timeout: float) -> None:
        self._timers.pop(key, None)
        if child.dead or all(s.key != key for s in child.inflight):
            return
        log.warning("pool %s: execution %s exceeded its timeout (%gs); stopping pool process"
                    " %s", self.name, key[0], timeout, child.process.pid)
        first = not child.timed_out
        child.timed_out[key] = timeout
        child.retiring = True  # no more runs for it
        if first and child.process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.process.pid, signal.SIGUSR1)
            assert self._loop is not None
            self._loop.call_later(KILL_GRACE, self._kill_stuck, child)

    def _kill_stuck(self, child: _Child) -> None:
        if not child.dead and child.process.is_alive():
            log.warning("pool %s: process %s did not stop within %gs; killing it", self.name,
                        child.process.pid, KILL_GRACE)
            child.process.kill()

    def _finish(self, child: _Child, key: RunKey) -> None:
        if (timer := self._timers.pop(key, None)) is not None:
            timer.cancel()
        self._where.pop(key, None)
        sent = self._sent_at.pop(key, None)
        if sent is not None:
            self._run_seconds = 0.9 * self._run_seconds + 0.1 * (time.monotonic() - sent)
        for spec in child.inflight:
            if spec.key == key:
                child.inflight.remove(spec)
                break
        if not child.inflight:
            child.idle_since = time.monotonic()
        self._assign()
        if self._reap_handle is None:
            self._schedule_reap()

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
        if not self.stopping and (not child.retiring or child.timed_out):
            metrics().restarts.labels(self.name).inc()
        if child.inflight:
            log.error("pool process %s for %s %s", child.process.pid, self.name, how)
        # runs start in order, `threads` at a time: those had started and die with the process
        for _ in range(min(self.threads, len(child.inflight))):
            crashed = child.inflight.popleft()
            self._where.pop(crashed.key, None)
            self._sent_at.pop(crashed.key, None)
            if (timer := self._timers.pop(crashed.key, None)) is not None:
                timer.cancel()
            for key in crashed.keys:  # a batch's items fail alike
                self._where.pop(key, None)
                self.handler(_ended_with(child, crashed.key, how, key))
        if child.inflight:
            for spec in reversed(child.inflight):
                self._where.pop(spec.key, None)
                self.pending.appendleft(spec)
        if not self.stopping:  # replaced if kept warm or there is work for it
            self._keep_warm()
            self._assign()
