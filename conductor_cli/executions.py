"""Executions: `invoke` (and wait), `get`, `cancel`, `executions ls` and `executions show`
(with its attempt history)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import TYPE_CHECKING

from conductor_worker import Client, Execution, ExecutionNotFound
from conductor_worker.encoding import STATES

from .connection import add_server_flags, client
from .flags import (
    EXIT_FAILED,
    UsageError,
    bounded_float,
    bounded_int,
    int32,
    json_flag,
    seconds,
    time_flag,
)
from .output import print_execution, print_table, when
from .watch import wait_with_progress, watch

if TYPE_CHECKING:
    from .flags import Subcommands

#: children listed by `executions show` (newest first from the API, shown oldest first)
SHOWN_CHILDREN = 20


def add_invoke(sub: Subcommands) -> None:
    invoke = sub.add_parser("invoke", help="invoke a task")
    invoke.add_argument("task", help="task name")
    payload = invoke.add_mutually_exclusive_group()
    payload.add_argument("--payload", default="null",
                         help="JSON payload (default null); - reads it from standard input")
    payload.add_argument("--payload-file", metavar="FILE",
                         help="read the JSON payload from FILE")
    invoke.add_argument("--wait", action="store_true", help="wait and print the final execution")
    invoke.add_argument("--timeout", type=seconds,
                        help="with --wait: give up after N seconds")
    invoke.add_argument("--delay", type=seconds, help="run no earlier than N seconds from now")
    invoke.add_argument("--priority", type=int32, default=0, help="higher runs first")
    invoke.add_argument("--dedupe-key", help="reuse an unfinished execution with this key")
    add_server_flags(invoke)

    invoke.add_argument("--run-at", help="run no earlier than this ISO 8601 time (with offset)")
    invoke.add_argument("--queue", help="the queue it goes to (default: the task's queue)")
    invoke.add_argument("--max-attempts", type=bounded_int(1, 10_000),
                        help="override the task's max_attempts")
    invoke.add_argument("--execution-timeout", type=bounded_float(0.001, 3_153_600_000),
                        metavar="SECONDS",
                        help="override the task's execution timeout (seconds > 0)")
    invoke.add_argument("--concurrency-key", metavar="KEY",
                        help="its key for per-key limits (default: the task's key field)")
    invoke.add_argument("--debounce", type=seconds, metavar="SECONDS",
                        help="with --dedupe-key: run once, this long after the last invoke"
                        " with the key, with the newest payload")
    invoke.add_argument("--throttle", type=seconds, metavar="SECONDS",
                        help="with --dedupe-key: only the first invoke per key per this many"
                        " seconds creates an execution")
    invoke.set_defaults(run=run_invoke)


def add_executions(sub: Subcommands) -> None:
    executions = sub.add_parser("executions", help="list and inspect executions")
    ex_sub = executions.add_subparsers(dest="executions_command", required=True,
                                       metavar="ACTION")
    ex_ls = ex_sub.add_parser("ls", help="list executions, newest first")
    _filter_flags(ex_ls)
    ex_ls.add_argument("--parent", metavar="EXECUTION_ID",
                       help="only the children of this execution (ctx.invoke)")
    ex_ls.add_argument("--limit", type=bounded_int(1, 1000), default=20,
                       help="print at most this many (default 20)")
    ex_ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_server_flags(ex_ls)
    ex_watch = ex_sub.add_parser(
        "watch", help="follow executions live: a line each time one appears or changes state "
        "(Ctrl-C stops)")
    _filter_flags(ex_watch)
    ex_watch.add_argument("--interval", type=bounded_float(0.2, 3600), default=1.0,
                          help="seconds between two looks (default 1)")
    ex_watch.add_argument("--limit", type=bounded_int(1, 1000), default=100,
                          help="newest executions looked at per round (default 100)")
    add_server_flags(ex_watch)
    ex_show = ex_sub.add_parser("show", help="one execution with its steps and error")
    ex_show.add_argument("execution_id", help="the execution's id")
    ex_show.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_server_flags(ex_show)
    executions.set_defaults(run=run_executions)


def _filter_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", help="only executions of this task")
    parser.add_argument("--state", action="append", choices=STATES,
                        help="only executions in this state (repeat for several)")
    parser.add_argument("--queue", help="only executions of this queue")


def add_get(sub: Subcommands) -> None:
    get = sub.add_parser("get", help="print an execution as JSON")
    get.add_argument("execution_id", help="the execution's id")
    add_server_flags(get)
    get.set_defaults(run=run_get)


def add_cancel(sub: Subcommands) -> None:
    cancel = sub.add_parser("cancel", help="cancel an execution")
    cancel.add_argument("execution_id", help="the execution's id")
    add_server_flags(cancel)
    cancel.set_defaults(run=run_cancel)


def _payload_text(args: argparse.Namespace) -> tuple[str, str]:
    """The payload's JSON text and the flag it came from."""
    if args.payload_file is not None:
        try:
            with open(args.payload_file, encoding="utf-8") as f:
                return f.read(), "--payload-file"
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--payload-file: cannot read {args.payload_file!r}: "
                             f"{getattr(exc, 'strerror', None) or exc}") from None
    if args.payload == "-":
        try:
            return sys.stdin.read(), "--payload -"
        except UnicodeDecodeError as exc:
            raise UsageError(f"--payload -: standard input is not UTF-8: {exc}") from None
    return args.payload, "--payload"


def run_invoke(args: argparse.Namespace) -> int:
    payload = json_flag(*_payload_text(args))
    run_at = time_flag(args.run_at, "--run-at")
    with client(args) as conductor:
        execution_id = conductor.invoke(
            args.task, payload, delay=args.delay, priority=args.priority,
            dedupe_key=args.dedupe_key, run_at=run_at, queue=args.queue,
            max_attempts=args.max_attempts, timeout=args.execution_timeout,
            concurrency_key=args.concurrency_key, debounce=args.debounce,
            throttle=args.throttle,
        )
        if not args.wait:
            print(execution_id)
            return 0
        execution = wait_with_progress(conductor, execution_id, args.timeout)
        print_execution(execution)
        return 0 if execution.state == "succeeded" else EXIT_FAILED


def run_get(args: argparse.Namespace) -> int:
    with client(args) as conductor:
        print_execution(conductor.get(args.execution_id))
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    with client(args) as conductor:
        print_execution(conductor.cancel(args.execution_id))
    return 0


def run_executions(args: argparse.Namespace) -> int:
    with client(args) as conductor:
        if args.executions_command == "show":
            return _show_execution(conductor, args.execution_id, args.json)
        if args.executions_command == "watch":
            return _watch(conductor, args)
        found = conductor.list(args.task, state=args.state, queue=args.queue, limit=args.limit,
                               parent_id=args.parent)
    if args.json:
        print(json.dumps([e.to_dict() for e in found], indent=2, default=str))
        return 0
    rows = [("ID", "TASK", "STATE", "ATTEMPT", "CREATED", "FINISHED")]
    rows += [
        (e.id, e.task, e.state, f"{e.attempt}/{e.max_attempts}", when(e.created_at),
         when(e.finished_at))
        for e in found
    ]
    print_table(rows)
    return 0


def _watch(conductor: Client, args: argparse.Namespace) -> int:
    def poll() -> list[Execution]:
        return conductor.list(args.task, state=args.state, queue=args.queue, limit=args.limit)

    def emit(line: str) -> None:
        print(line, flush=True)

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a watch ends
        watch(poll, conductor.get, args.interval, emit)
    return 0


def _deleted(conductor: Client, execution_id: str) -> bool:
    """Whether an execution is gone (a parent that retention or a delete removed; its
    children stay, naming it)."""
    try:
        conductor.get(execution_id)
    except ExecutionNotFound:
        return True
    return False


def _parent(parent_id: str | None, deleted: bool) -> str:
    if not parent_id:
        return "-"
    return f"{parent_id} (deleted)" if deleted else parent_id


def _show_execution(conductor: Client, execution_id: str, as_json: bool) -> int:
    execution = conductor.get(execution_id)
    steps = conductor.steps(execution_id)
    children = conductor.list(parent_id=execution_id, limit=SHOWN_CHILDREN + 1)
    parent_gone = execution.parent_id is not None and _deleted(conductor, execution.parent_id)
    if as_json:
        data = execution.to_dict()
        if execution.parent_id:
            data["parent_deleted"] = parent_gone
        data["children"] = [c.id for c in children[:SHOWN_CHILDREN]]
        data["steps"] = [
            {"name": s.name, "result": s.result, "saved_at": s.saved_at.isoformat()}
            for s in steps
        ]
        print(json.dumps(data, indent=2, default=str))
        return 0
    fields = [
        ("id", execution.id), ("task", execution.task), ("state", execution.state),
        ("attempt", f"{execution.attempt}/{execution.max_attempts}"),
        ("parent", _parent(execution.parent_id, parent_gone)),
        ("waiting for", execution.waiting_for or "-"),
        ("schedule", execution.schedule or "-"), ("rerun of", execution.rerun_of or "-"),
        ("created", when(execution.created_at)),
        ("run at", when(execution.run_at)), ("started", when(execution.started_at)),
        ("finished", when(execution.finished_at)),
        ("payload", json.dumps(execution.payload)), ("result", json.dumps(execution.result)),
    ]
    if execution.redacted_at is not None:
        fields.append(("redacted", when(execution.redacted_at)))
    fields[3:3] = [("queue", execution.queue), ("key", execution.concurrency_key or "-")]
    if execution.explanation is not None:
        fields.insert(3, ("why pending", f"{execution.explanation.message}"
                          f" [{execution.explanation.reason}]"))
    print_table([(f"{k}:", v) for k, v in fields])
    if children:
        more = " (and more: executions ls --parent)" if len(children) > SHOWN_CHILDREN else ""
        print(f"children{more}:")
        for c in reversed(children[:SHOWN_CHILDREN]):
            print(f"  {c.id}  {c.task}  {c.state}")
    print(f"steps ({len(steps)}):")
    for step in steps:
        print(f"  {when(step.saved_at)}  {step.name} = {json.dumps(step.result)}")
    print(f"attempts ({len(execution.attempts)}):")
    for a in execution.attempts:
        how = f"{a.outcome} ({a.reason})" if a.reason else a.outcome
        if a.error is not None:
            how += f": {a.error.type}: {a.error.message}"
        print(f"  #{a.number} attempt {a.attempt}  {when(a.started_at)} -> "
              f"{when(a.finished_at)}  {a.worker_id or '-'}  {how}")
    if execution.error is not None:
        print(f"error: {execution.error.type}: {execution.error.message}")
        if execution.error.traceback:
            print(execution.error.traceback.rstrip())
    return 0
