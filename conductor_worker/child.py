"""The pool process: runs handlers, talks only to its parent over a pipe.

No gRPC and no database here: step saves go to the parent, which records them and answers.
Both directions carry pickled lists of messages, as many per write as are waiting (one writer
thread per side, so handler threads never contend for the pipe).

Plain handlers run on `threads` handler threads; `async def` handlers run as coroutines on
the process's event loop, up to `threads` at once, so a step costs no thread switch.
Every message about a run names it by its key, (execution id, lease token), so an old run of
an execution that is winding down and its re-lease can never be confused.
Messages from the parent:
    ("run", RunSpec)                      run this next (queued in order)
    ("step_ack", key, name, recorded_json | None, error)
                                          None: refused (error says why) or the lease is lost
    ("interrupt", key, reason, run_at | None)   release at the next checkpoint; reason "lost":
                                          the lease is gone, so its waits are answered now
    ("call_result", request_id, ok, value)   answer to a "call" (value or error text)
    ("clock", coordinator_time, monotonic, sequence)   the coordinator's clock jumped
    ("renewed", monotonic, bound | None)  every lease the worker holds is valid until then;
                                          bound: the coordinator's time is at most
                                          (its time, monotonic) (see RunSpec.coordinator_now)
    ("shutdown",)                         the worker is stopping: release at the next checkpoint
    ("stop",)                             exit when idle
and to the parent:
    ("ready", pid, forker_threads)        threads of the process that forked this one
    ("step", key, name, result_json[, True])   True: sent again, its answer being late
    ("done", key, result_json)
    ("error", key, type, message, traceback, retryable)
    ("released", key, reason, run_at | None)
    ("abandoned", key)
    ("trace", key, AttemptSpans)          a traced run's span times, just before its outcome
    ("call", key, request_id, method, kwargs)   ask the worker to call the client API
    ("clock_ack", sequence)               the clock sync is in use
    ("started", key, monotonic)           a run with a timeout started (its clock runs)
    ("batch_done", key)                   a batch run ended (after its items' outcomes)

SIGUSR1 makes the process exit at once (code STOPPED_EXIT): the worker sends it when a run
exceeds its timeout, and SIGKILL a moment later if the process is stuck where no Python
code runs (a C call holding the GIL).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import itertools
import logging
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from .batching import run_batch, run_batch_async
from .context import AsyncContext, Context, Event, RunKey, RunSpec, encode_result
from .errors import Interrupted, LeaseLost, NonRetryableError, RateLimited
from .log_format import formatter
from .metrics import ENV as METRICS_ENV
from .metrics import labelled, metrics
from .pipes import Outgoing, read_batch, write_batches
from .preload import forker_threads
from .task import Task, _load_task
from .typed import parse_payload

#: a pool process's tasks by name (one, or the tasks of a shared pool: all plain or all async)
Tasks = dict[str, Task[..., Any]]

PR_SET_PDEATHSIG = 1
#: seconds between re-checks of a run that waits for its lease to be renewed
LEASE_POLL = 0.5
#: seconds a step save waits for its answer before it is sent again: saves are idempotent
#: (the first write of a name wins and every answer carries the recorded result), so a save
#: or an answer lost anywhere between this process and the database delays the run by this
#: much instead of holding it (and its heartbeated lease) forever. A save sent again is
#: marked so, and the worker logs where the first one was lost (runtime.Worker._on_step).
STEP_RESEND = 5.0
#: seconds between two looks for step saves unanswered for STEP_RESEND (one thread per pool
#: process does it, so that a save itself costs no timer)
RESEND_CHECK = 1.0
#: the exit code of a pool process stopped by SIGUSR1 (a run's timeout)
STOPPED_EXIT = 75
#: seconds a pool process of several handler threads lets messages gather before a write
#: (measured on S2-sync: about a quarter less main-process CPU per step)
THREADS_GATHER = 0.0003


class PipeLink:
    """The child's side of the pipe; a reader thread keeps interrupt flags current.

    With an event loop (`async def` handlers), runs and step answers are handed to the loop,
    one hand-over per batch read from the pipe."""

    def __init__(
        self, conn: Connection, loop: asyncio.AbstractEventLoop | None = None,
        gather: float = 0.0,
    ) -> None:
        self.conn = conn
        #: seconds the writer waits for more messages once one is there (see write_batches)
        self.gather = gather
        self.shutdown = False
        self.interrupts: dict[RunKey, tuple[str, float | None]] = {}
        self.clock_sync: tuple[float, float] | None = None
        self.clock_bound: tuple[float, float] | None = None
        self.renewed_until = 0.0
        self._lease_changed = threading.Condition()
        self.runs: queue.Queue[RunSpec | None] = queue.Queue()
        #: answers awaited by handler threads: ("step", key, name) or ("call", request id);
        #: a run's step waits are answered at once when its lease is lost
        self._waiting: dict[tuple[Any, ...], queue.SimpleQueue[Any]] = {}
        #: step saves not answered yet: wait key -> [message, monotonic time last sent]
        self._unanswered: dict[tuple[Any, ...], list[Any]] = {}
        self._requests = itertools.count(1)
        self._outq: queue.SimpleQueue[Outgoing] = queue.SimpleQueue()
        # -- the event loop's side (async handlers only)
        self._loop = loop
        self._futures: dict[tuple[Any, ...], asyncio.Future[Any]] = {}
        self._for_loop: list[tuple[Any, ...]] = []
        self._soon: list[tuple[Any, ...]] = []
        self.loop_runs: deque[RunSpec] = deque()
        self.loop_stop = False
        self.loop_wakeup = asyncio.Event()
        self.lease_event = asyncio.Event()
        threading.Thread(target=self._read, daemon=True, name="parent-reader").start()
        self._writer = threading.Thread(target=self._write, daemon=True, name="parent-writer")
        self._writer.start()
        threading.Thread(target=self._resend, daemon=True, name="step-resend").start()

    def send(self, message: tuple[Any, ...] | list[tuple[Any, ...]]) -> None:
        """Queue a message (or several, for one write) for the parent (sent by the writer
        thread, in order)."""
        self._outq.put(message)

    def log(self, key: RunKey, attempt: int, level: str, message: str) -> None:
        self._outq.put(("log", key, attempt, level, message, time.time()))

    def close(self) -> None:
        """Send everything queued, then stop the writer thread."""
        self._flush_soon()
        self._outq.put(None)
        self._writer.join()

    def _write(self) -> None:
        if not write_batches(self._outq, self.conn, self.gather):
            os._exit(0)  # the worker is gone; nothing here may outlive it

    def _resend(self) -> None:
        """Send again every step save unanswered for STEP_RESEND seconds (see there)."""
        while True:
            time.sleep(min(RESEND_CHECK, STEP_RESEND / 2))
            now = time.monotonic()
            for wait, entry in list(self._unanswered.items()):  # list(): savers add meanwhile
                if now - entry[1] >= STEP_RESEND and wait in self._unanswered:
                    entry[1] = now
                    self.send((*entry[0], True))  # idempotent; True: sent again

    def _read(self) -> None:
        try:
            while True:
                for message in read_batch(self.conn):
                    self._handle(message)
                if self._for_loop:
                    assert self._loop is not None
                    handed, self._for_loop = self._for_loop, []
                    self._loop.call_soon_threadsafe(self._on_loop, handed)
        except (EOFError, OSError):
            os._exit(0)  # the worker is gone; nothing here may outlive it

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "step_ack":  # the most frequent
            key = ("step", message[1], message[2])
            if key in self._futures:
                self._for_loop.append((key, message[3:]))
            else:
                self._answer(key, message[3:])
        elif kind in ("run", "stop"):
            if self._loop is not None:
                self._for_loop.append(message)
            else:
                self.runs.put(message[1] if kind == "run" else None)
        elif kind == "call_result":
            call = ("call", message[1])
            if call in self._futures:
                self._for_loop.append((call, message[2:]))
            else:
                self._answer(call, message[2:])
        else:
            self._handle_control(kind, message)

    def _handle_control(self, kind: str, message: tuple[Any, ...]) -> None:
        if kind == "interrupt":
            self.interrupts[message[1]] = (message[2], message[3])
            if message[2] == "lost":
                self._lost(message[1])
                self._lease_news()
        elif kind == "renewed":
            self.renewed_until = max(self.renewed_until, message[1])
            if message[2] is not None:
                self.clock_bound = message[2]
            self._lease_news()
        elif kind == "clock":  # readings from before a jump no longer count
            self.clock_sync = (message[1], message[2])
            self.clock_bound = None
            if message[3] is not None:
                self.send(("clock_ack", message[3]))
        elif kind == "shutdown":
            self.shutdown = True

    def _lease_news(self) -> None:
        """Wake the runs waiting to know whether their lease is still valid."""
        with self._lease_changed:
            self._lease_changed.notify_all()
        if self._loop is not None:
            self._for_loop.append(("lease",))

    def _check_lost(self, key: RunKey) -> None:
        if key in self.interrupts and self.interrupts[key][0] == "lost":
            raise LeaseLost(f"execution {key[0]}: lease lost")

    def wait_lease(self, key: RunKey, valid: Callable[[], bool]) -> None:
        """Block a handler thread until its lease is renewed (valid()) or lost (raises)."""
        with self._lease_changed:
            while not valid():
                self._check_lost(key)
                self._lease_changed.wait(LEASE_POLL)

    async def wait_lease_async(self, key: RunKey, valid: Callable[[], bool]) -> None:
        while not valid():
            self._check_lost(key)
            self.lease_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.lease_event.wait(), LEASE_POLL)

    def _lost(self, run: RunKey) -> None:
        """The run's lease is gone: answer its waiting step saves (they raise LeaseLost)."""
        lost: tuple[str | None, str] = (None, "")
        for key in list(self._waiting):  # list(): handler threads add waits meanwhile
            if key[0] == "step" and key[1] == run:
                self._answer(key, lost)
        for key in list(self._futures):
            if key[1] == run:
                self._for_loop.append((key, lost))

    def _answer(self, key: tuple[Any, ...], value: Any) -> None:
        self._unanswered.pop(key, None)
        waiter = self._waiting.pop(key, None)
        if waiter is not None:
            waiter.put(value)

    def _ask(self, key: tuple[Any, ...], message: tuple[Any, ...]) -> Any:
        """Send a request and block this handler thread until its answer arrives."""
        waiter: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._waiting[key] = waiter
        self.send(message)
        return waiter.get()

    def save_step(self, key: RunKey, name: str, result_json: str) -> str:
        if key in self.interrupts and self.interrupts[key][0] == "lost":
            return _checked((None, ""), key, name)
        wait, message = ("step", key, name), ("step", key, name, result_json)
        waiter: queue.SimpleQueue[tuple[str | None, str]] = queue.SimpleQueue()
        self._waiting[wait] = waiter
        self._unanswered[wait] = [message, time.monotonic()]
        self.send(message)
        return _checked(waiter.get(), key, name)

    def call(self, key: RunKey, method: str, kwargs: dict[str, Any]) -> Any:
        """Have the worker's main process call the coordinator's client API."""
        request_id = next(self._requests)
        ok, value = self._ask(("call", request_id), ("call", key, request_id, method, kwargs))
        if not ok:
            raise RuntimeError(f"{method} failed: {value}")
        return value

    # -- on the event loop (async handlers) ---------------------------------------------

    async def call_async(self, key: RunKey, method: str, kwargs: dict[str, Any]) -> Any:
        """call for `async def` handlers: the loop goes on while the worker calls."""
        assert self._loop is not None, "call_async needs the link's event loop"
        request_id = next(self._requests)
        wait = ("call", request_id)
        future: asyncio.Future[Any] = self._loop.create_future()
        self._futures[wait] = future
        self.send_soon(("call", key, request_id, method, kwargs))
        ok, value = await future
        if not ok:
            raise RuntimeError(f"{method} failed: {value}")
        return value

    async def save_step_async(self, key: RunKey, name: str, result_json: str) -> str:
        assert self._loop is not None, "save_step_async needs the link's event loop"
        if key in self.interrupts and self.interrupts[key][0] == "lost":
            return _checked((None, ""), key, name)
        wait, message = ("step", key, name), ("step", key, name, result_json)
        future: asyncio.Future[tuple[str | None, str]] = self._loop.create_future()
        self._futures[wait] = future
        self._unanswered[wait] = [message, time.monotonic()]
        self.send_soon(message)
        return _checked(await future, key, name)

    def send_soon(self, message: tuple[Any, ...]) -> None:
        """Queue a message for the parent from the loop: everything queued in one pass of
        the loop goes to the writer thread as one batch."""
        if not self._soon:
            assert self._loop is not None
            self._loop.call_soon(self._flush_soon)
        self._soon.append(message)

    def _flush_soon(self) -> None:
        if self._soon:
            batch, self._soon = self._soon, []
            self._outq.put(batch)

    def _on_loop(self, handed: list[tuple[Any, ...]]) -> None:
        for item in handed:
            if item[0] == "run":
                self.loop_runs.append(item[1])
            elif item[0] == "stop":
                self.loop_stop = True
            elif item[0] == "lease":
                self.lease_event.set()
            else:
                self._unanswered.pop(item[0], None)
                future = self._futures.pop(item[0], None)
                if future is not None and not future.done():
                    future.set_result(item[1])
        self.loop_wakeup.set()


def _checked(answer: tuple[str | None, str], key: RunKey, name: str) -> str:
    """The recorded result from a step save's answer (recorded JSON or None, error)."""
    recorded, error = answer
    if error:
        raise ValueError(f"step {name!r} was not recorded: {error}")
    if recorded is None:
        raise LeaseLost(f"execution {key[0]}: lease lost while saving step {name!r}")
    return recorded


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def main(
    conn: Connection,
    tasks: list[tuple[str, str]],
    log_level: int,
    threads: int = 1,
    metrics_dir: str | None = None,
    forked: bool = False,
    log_format: str = "text",
) -> None:
    """Entry point of a pool process: runs up to `threads` executions at once of the tasks
    named by (module, qualname). A process `forked` by a fork server that had more than one
    thread runs nothing (a lock another thread held may never be released here): it says so
    and exits, and the pool starts its processes by spawn instead."""
    forker = forker_threads()  # first: the fork server is still the parent
    if forked and forker > 1:
        link = PipeLink(conn)
        link.send(("ready", os.getpid(), forker))
        link.close()
        return
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, _stopped)
    if metrics_dir:  # the worker's, even if the fork server started before it was chosen
        os.environ[METRICS_ENV] = metrics_dir
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=log_level, handlers=[handler])
    loaded = [_load_task(module, qualname) for module, qualname in tasks]
    by_name: Tasks = {t.name: t for t in loaded}
    if loaded[0].is_async:
        loop = asyncio.new_event_loop()
        link = PipeLink(conn, loop)
        link.send(("ready", os.getpid(), forker))
        try:
            loop.run_until_complete(_serve_async(by_name, link, threads))
        finally:
            loop.close()
    else:
        # Handler threads woken together by one batch of step answers send their next steps
        # a moment apart: gathered, they share a write (and everything after it).
        link = PipeLink(conn, gather=THREADS_GATHER if threads > 1 else 0.0)
        link.send(("ready", os.getpid(), forker))
        runners = [
            threading.Thread(target=_serve, args=(by_name, link), name=f"run-{i}", daemon=True)
            for i in range(threads)
        ]
        for runner in runners:
            runner.start()
        for runner in runners:
            runner.join()
    link.close()


def _stopped(signum: int, frame: object) -> None:
    """SIGUSR1: a run here exceeded its timeout; the worker replaces this process."""
    os._exit(STOPPED_EXIT)


def _serve(tasks: Tasks, link: PipeLink) -> None:
    """Run executions from the queue one after another until told to stop."""
    while (spec := link.runs.get()) is not None:
        link.send(run(tasks[spec.task], spec, link))
        for key in spec.keys:  # a batch's items may have been interrupted too
            link.interrupts.pop(key, None)
    link.runs.put(None)  # let the other runner threads stop too


async def _serve_async(tasks: Tasks, link: PipeLink, slots: int) -> None:
    """Run executions as coroutines, up to `slots` at once, in the order they came."""
    running: set[asyncio.Task[None]] = set()

    def ended(finished: asyncio.Task[None]) -> None:
        running.discard(finished)
        link.loop_wakeup.set()

    while True:
        while link.loop_runs and len(running) < slots:
            spec = link.loop_runs.popleft()
            started = asyncio.create_task(_run_async(tasks[spec.task], spec, link))
            running.add(started)
            started.add_done_callback(ended)
        if link.loop_stop and not link.loop_runs and not running:
            return
        await link.loop_wakeup.wait()
        link.loop_wakeup.clear()


def run(
    task: Task[..., Any], spec: RunSpec, link: PipeLink
) -> tuple[Any, ...] | list[tuple[Any, ...]]:
    """Run one execution of a plain handler; returns the message that reports how it ended
    (a batch run: its items' messages)."""
    key = spec.key
    if spec.items:
        if link.shutdown:
            return _batch_let_go(spec)
        if spec.timeout:
            link.send(("started", key, time.monotonic()))
        return run_batch(task.fn, spec, task.name, task.payload_type, link)
    if (let_go := _let_go(spec, link)) is not None:
        return let_go
    if spec.timeout:
        link.send(("started", key, time.monotonic()))
    started = time.perf_counter()
    ctx = Context(spec, link)
    try:
        outcome = ("done", key, encode_result(task.fn(_event(task, spec), ctx)))
    except BaseException as exc:  # the attempt ended early, whatever was raised
        outcome = _ended_by(key, exc, spec, link)
    labelled(metrics().handler_seconds, spec.task).observe(time.perf_counter() - started)
    if ctx.recorder is not None:  # a traced run: its spans go to the worker first
        link.send(ctx.recorder.message(key, outcome))
    return outcome


async def _run_async(task: Task[..., Any], spec: RunSpec, link: PipeLink) -> None:
    """Run one execution of an `async def` handler and report how it ended."""
    key = spec.key
    if spec.items:
        if spec.timeout:
            link.send(("started", key, time.monotonic()))
        outcomes = _batch_let_go(spec) if link.shutdown else await run_batch_async(
            task.fn, spec, task.name, task.payload_type, link)
        for message in outcomes:
            link.send_soon(message)
        for item in spec.keys:
            link.interrupts.pop(item, None)
        return
    if (let_go := _let_go(spec, link)) is not None:
        link.send_soon(let_go)
        return
    if spec.timeout:  # at once, not with the loop's batch: the handler may block the loop
        link.send(("started", key, time.monotonic()))
    started = time.perf_counter()
    ctx = AsyncContext(spec, link)
    try:
        result = await task.fn(_event(task, spec), ctx)
        outcome: tuple[Any, ...] = ("done", key, encode_result(result))
    except BaseException as exc:  # the attempt ended early, whatever was raised
        outcome = _ended_by(key, exc, spec, link)
    labelled(metrics().handler_seconds, spec.task).observe(time.perf_counter() - started)
    if ctx.recorder is not None:  # a traced run: its spans go to the worker first
        link.send_soon(ctx.recorder.message(key, outcome))
    link.send_soon(outcome)
    link.interrupts.pop(key, None)


def _event(task: Task[..., Any], spec: RunSpec) -> Event[Any]:
    """The handler's event; its payload parsed into the handler's `Event[X]` type, if any
    (InvalidPayload, not retried, when it does not fit)."""
    event = spec.event()
    if task.payload_type is None:
        return event
    return dataclasses.replace(event, payload=parse_payload(task.payload_type, event.payload))


def _batch_let_go(spec: RunSpec) -> list[tuple[Any, ...]]:
    """A batch that must not start (the worker is stopping): every item is released."""
    return [("released", k, "shutdown", None) for k in spec.keys] + [("batch_done", spec.key)]


def _let_go(spec: RunSpec, link: PipeLink) -> tuple[Any, ...] | None:
    """The release message for a run that must not start (worker stopping, run interrupted)."""
    key = spec.key
    if link.shutdown or key in link.interrupts:
        reason, run_at = link.interrupts.get(key, ("shutdown", None))
        if reason == "lost":
            return ("abandoned", key)
        return ("released", key, reason, run_at)
    closes = spec.window_closes_at
    if closes is not None and spec.coordinator_now(link.clock_sync, link.clock_bound) >= closes:
        return ("released", key, "window", spec.window_reopens_at)
    return None


def _ended_by(key: RunKey, exc: BaseException, spec: RunSpec, link: PipeLink) -> tuple[Any, ...]:
    """The message for a run that raised: a release, an abandoned lease or a failure."""
    if isinstance(exc, RateLimited):  # on the coordinator's clock, as ctx.sleep
        now = spec.coordinator_now(link.clock_sync, link.clock_bound)
        return ("released", key, "rate_limited", now + exc.retry_after)
    if isinstance(exc, Interrupted):
        if exc.reason == "lost":
            return ("abandoned", key)
        return ("released", key, exc.reason, exc.run_at)
    if isinstance(exc, LeaseLost):
        return ("abandoned", key)
    retryable = not isinstance(exc, NonRetryableError)
    text = "".join(traceback.format_exception(exc))
    return ("error", key, type(exc).__name__, str(exc), text, retryable)
