"""The pool process: runs handlers one at a time, talks only to its parent over a pipe.

No gRPC and no database here: step saves go to the parent, which records them and answers.
Both directions carry pickled lists of messages, as many per write as are waiting (one writer
thread per side, so handler threads never contend for the pipe). Messages from the parent:
    ("run", RunSpec)                      run this next (queued in order)
    ("step_ack", execution_id, name, recorded_json | None)   None: the lease is lost
    ("interrupt", execution_id, reason, run_at | None)        release at the next checkpoint
    ("call_result", request_id, ok, value)   answer to a "call" (value or error text)
    ("shutdown",)                         the worker is stopping: release at the next checkpoint
    ("stop",)                             exit when idle
and to the parent:
    ("ready", pid)
    ("step", execution_id, token, name, result_json)
    ("done", execution_id, result_json)
    ("error", execution_id, type, message, traceback, retryable)
    ("released", execution_id, reason, run_at | None)
    ("abandoned", execution_id)
    ("call", execution_id, request_id, method, kwargs)   ask the worker to call the client API
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import logging
import os
import queue
import signal
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

from .context import AsyncContext, Context, RunSpec, encode_result
from .errors import Interrupted, LeaseLost, NonRetryableError
from .metrics import metrics
from .pipes import read_batch, write_batches
from .task import Task, _load_task

PR_SET_PDEATHSIG = 1


class PipeLink:
    """The child's side of the pipe; a reader thread keeps interrupt flags current."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.shutdown = False
        self.interrupts: dict[str, tuple[str, float | None]] = {}
        self.runs: queue.Queue[RunSpec | None] = queue.Queue()
        #: answers awaited by handler threads: ("step", eid, name) or ("call", request id)
        self._waiting: dict[tuple[Any, ...], queue.SimpleQueue[Any]] = {}
        self._requests = itertools.count(1)
        self._outq: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        threading.Thread(target=self._read, daemon=True, name="parent-reader").start()
        self._writer = threading.Thread(target=self._write, daemon=True, name="parent-writer")
        self._writer.start()

    def send(self, message: tuple[Any, ...]) -> None:
        """Queue a message for the parent (sent by the writer thread, in order)."""
        self._outq.put(message)

    def close(self) -> None:
        """Send everything queued, then stop the writer thread."""
        self._outq.put(None)
        self._writer.join()

    def _write(self) -> None:
        if not write_batches(self._outq, self.conn):
            os._exit(0)  # the worker is gone; nothing here may outlive it

    def _read(self) -> None:
        try:
            while True:
                for message in read_batch(self.conn):
                    self._handle(message)
        except (EOFError, OSError):
            os._exit(0)  # the worker is gone; nothing here may outlive it

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "run":
            self.runs.put(message[1])
        elif kind == "step_ack":
            self._answer(("step", message[1], message[2]), message[3])
        elif kind == "call_result":
            self._answer(("call", message[1]), message[2:])
        elif kind == "interrupt":
            self.interrupts[message[1]] = (message[2], message[3])
        elif kind == "shutdown":
            self.shutdown = True
        elif kind == "stop":
            self.runs.put(None)

    def _answer(self, key: tuple[Any, ...], value: Any) -> None:
        waiter = self._waiting.pop(key, None)
        if waiter is not None:
            waiter.put(value)

    def _ask(self, key: tuple[Any, ...], message: tuple[Any, ...]) -> Any:
        """Send a request and block this handler thread until its answer arrives."""
        waiter: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._waiting[key] = waiter
        self.send(message)
        return waiter.get()

    def save_step(self, execution_id: str, token: str, name: str, result_json: str) -> str:
        recorded: str | None = self._ask(
            ("step", execution_id, name), ("step", execution_id, token, name, result_json)
        )
        if recorded is None:
            raise LeaseLost(f"execution {execution_id}: lease lost while saving step {name!r}")
        return recorded


    def call(self, execution_id: str, method: str, kwargs: dict[str, Any]) -> Any:
        """Have the worker's main process call the coordinator's client API."""
        request_id = next(self._requests)
        ok, value = self._ask(
            ("call", request_id), ("call", execution_id, request_id, method, kwargs)
        )
        if not ok:
            raise RuntimeError(f"{method} failed: {value}")
        return value


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def main(conn: Connection, module: str, qualname: str, log_level: int, threads: int = 1) -> None:
    """Entry point of a pool process: runs up to `threads` executions at once."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    task = _load_task(module, qualname)
    link = PipeLink(conn)
    link.send(("ready", os.getpid()))
    if threads == 1:
        _serve(task, link, asyncio.new_event_loop() if task.is_async else None)
    else:
        runners = [
            threading.Thread(target=_serve, args=(task, link, None), name=f"run-{i}", daemon=True)
            for i in range(threads)
        ]
        for runner in runners:
            runner.start()
        for runner in runners:
            runner.join()
    link.close()


def _serve(task: Task[..., Any], link: PipeLink, loop: asyncio.AbstractEventLoop | None) -> None:
    """Run executions from the queue one after another until told to stop."""
    while (spec := link.runs.get()) is not None:
        link.send(run(task, spec, link, loop))
        link.interrupts.pop(spec.execution_id, None)
    link.runs.put(None)  # let the other runner threads stop too


def run(
    task: Task[..., Any], spec: RunSpec, link: PipeLink, loop: asyncio.AbstractEventLoop | None
) -> tuple[Any, ...]:
    """Run one execution and return the message that reports how it ended."""
    eid = spec.execution_id
    if link.shutdown or eid in link.interrupts:  # never start what must be let go
        reason, run_at = link.interrupts.get(eid, ("shutdown", None))
        return ("released", eid, reason, run_at)
    started = time.perf_counter()
    try:
        event = spec.event()
        if task.is_async:
            coroutine = task.fn(event, AsyncContext(spec, link))
            result = loop.run_until_complete(coroutine) if loop else asyncio.run(coroutine)
        else:
            result = task.fn(event, Context(spec, link))
        return ("done", eid, encode_result(result))
    except Interrupted as stop:
        return ("released", eid, stop.reason, stop.run_at)
    except LeaseLost:
        return ("abandoned", eid)
    except BaseException as exc:  # the attempt failed, whatever was raised
        retryable = not isinstance(exc, NonRetryableError)
        text = "".join(traceback.format_exception(exc))
        return ("error", eid, type(exc).__name__, str(exc), text, retryable)
    finally:
        metrics().handler_seconds.labels(spec.task).observe(time.perf_counter() - started)
