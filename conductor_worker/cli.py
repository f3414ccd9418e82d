"""The `conductor` command: server, worker, dev, invoke, get, cancel."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc

from .client import Client
from .errors import ConductorError

EXIT_FAILED = 1
EXIT_USAGE = 2


def _server_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        default=os.environ.get("CONDUCTOR_SERVER", "127.0.0.1:50051"),
        help="coordinator address host:port (default: $CONDUCTOR_SERVER or 127.0.0.1:50051)",
    )


def _coordinator_args(parser: argparse.ArgumentParser, default_port: int | None) -> None:
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=default_port,
        help="port to listen on; 0 picks a free one and prints it (default 50051)",
    )
    parser.add_argument(
        "--database-url",
        help="PostgreSQL URL (default: $CONDUCTOR_DATABASE_URL, else an embedded PostgreSQL)",
    )
    parser.add_argument("--data-dir", help="folder of the embedded PostgreSQL")
    parser.add_argument("--lease-timeout", type=float, help="seconds a lease lives (default 30)")
    parser.add_argument(
        "--max-payload-bytes", type=int, help="largest accepted payload (default 1 MiB)"
    )


def _worker_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("module", help="Python module that defines the @task functions")
    parser.add_argument(
        "--drain-timeout", type=float, default=60.0,
        help="seconds to let running executions reach a checkpoint on SIGTERM (default 60)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="conductor", description="Durable background tasks with a gRPC control plane."
    )
    parser.add_argument("--log-level", default=os.environ.get("CONDUCTOR_LOG_LEVEL", "INFO"))
    parser.add_argument(
        "--log-format", choices=["text", "json"],
        default=os.environ.get("CONDUCTOR_LOG_FORMAT", "text"),
        help="log lines as text or one JSON object per line (default: $CONDUCTOR_LOG_FORMAT)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    server = sub.add_parser("server", help="run a coordinator")
    _coordinator_args(server, None)

    worker = sub.add_parser("worker", help="run the tasks of a module")
    _worker_args(worker)
    _server_arg(worker)
    worker.add_argument(
        "--drain", action="store_true",
        help="run everything runnable now, then exit (for tests and one-off batches)",
    )

    dev = sub.add_parser(
        "dev", help="embedded database + coordinator + worker in one process (Ctrl-C stops)"
    )
    _worker_args(dev)
    _coordinator_args(dev, None)

    invoke = sub.add_parser("invoke", help="invoke a task")
    invoke.add_argument("task", help="task name")
    invoke.add_argument("--payload", default="null", help="JSON payload (default null)")
    invoke.add_argument("--wait", action="store_true", help="wait and print the final execution")
    invoke.add_argument("--timeout", type=float, help="with --wait: give up after N seconds")
    invoke.add_argument("--delay", type=float, help="run no earlier than N seconds from now")
    invoke.add_argument("--priority", type=int, default=0, help="higher runs first")
    invoke.add_argument("--dedupe-key", help="reuse an unfinished execution with this key")
    _server_arg(invoke)

    invoke.add_argument("--run-at", help="run no earlier than this ISO 8601 time (with offset)")

    schedule = sub.add_parser("schedule", help="manage cron schedules")
    schedule_sub = schedule.add_subparsers(dest="schedule_command", required=True,
                                           metavar="ACTION")
    add = schedule_sub.add_parser("add", help="create or replace a schedule")
    add.add_argument("task")
    add.add_argument("name")
    add.add_argument("--cron", required=True, help='5-field cron expression, e.g. "0 2 * * *"')
    add.add_argument("--timezone", help="IANA time zone of the expression (default UTC)")
    add.add_argument("--payload", default="null", help="JSON payload of each execution")
    add.add_argument("--missed", choices=["latest", "skip", "all"], default="latest",
                     help="fires missed during downtime: run the latest, none, or all")
    add.add_argument("--missed-limit", type=int, default=1,
                     help="with --missed all: run at most this many missed fires")
    _server_arg(add)
    ls = schedule_sub.add_parser("ls", help="list schedules")
    ls.add_argument("task", nargs="?")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _server_arg(ls)
    rm = schedule_sub.add_parser("rm", help="delete a schedule and cancel its pending fires")
    rm.add_argument("task")
    rm.add_argument("name")
    _server_arg(rm)

    get = sub.add_parser("get", help="print an execution as JSON")
    get.add_argument("execution_id")
    _server_arg(get)

    cancel = sub.add_parser("cancel", help="cancel an execution")
    cancel.add_argument("execution_id")
    _server_arg(cancel)
    return parser


def _settings(args: argparse.Namespace) -> Any:
    from conductor_server.settings import from_environment

    return from_environment().with_overrides(
        host=args.host,
        port=args.port,
        database_url=args.database_url,
        data_dir=Path(args.data_dir) if args.data_dir else None,
        lease_timeout=args.lease_timeout,
        max_payload_bytes=args.max_payload_bytes,
        log_format=args.log_format,
    )


def _print_execution(execution: Any) -> None:
    print(json.dumps(execution.to_dict(), indent=2, default=str))


def cmd_server(args: argparse.Namespace) -> int:
    from conductor_server.app import serve

    asyncio.run(serve(_settings(args)))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from .runtime import Worker

    sys.path.insert(0, os.getcwd())
    worker = Worker(args.module, args.server, drain_timeout=args.drain_timeout,
                    log_level=logging.getLogger().level, drain=args.drain)
    return worker.run()


def cmd_dev(args: argparse.Namespace) -> int:
    from conductor_server.app import CoordinatorThread

    from .runtime import Worker

    sys.path.insert(0, os.getcwd())
    worker_tasks = args.module
    coordinator = CoordinatorThread(_settings(args))
    address = coordinator.start()

    def ready() -> None:
        print(f"conductor dev: coordinator on {address}; Ctrl-C stops", flush=True)

    try:
        worker = Worker(worker_tasks, address, drain_timeout=args.drain_timeout,
                        log_level=logging.getLogger().level, on_connected=ready)
        return worker.run()
    finally:
        coordinator.stop()


class UsageError(Exception):
    """A flag's value cannot be used; the message names the flag."""


def _json_flag(text: str, flag: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{flag} is not valid JSON: {exc}") from exc


def _time_flag(text: str | None, flag: str) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(f"{flag}: {text!r} is not an ISO 8601 time") from exc
    if when.tzinfo is None:
        raise UsageError(f"{flag}: {text!r} needs a UTC offset, e.g. 2026-01-31T22:00:00+01:00")
    return when


def cmd_invoke(args: argparse.Namespace) -> int:
    payload = _json_flag(args.payload, "--payload")
    run_at = _time_flag(args.run_at, "--run-at")
    with Client(args.server) as client:
        execution_id = client.invoke(
            args.task, payload, delay=args.delay, priority=args.priority,
            dedupe_key=args.dedupe_key, run_at=run_at,
        )
        if not args.wait:
            print(execution_id)
            return 0
        execution = client.wait(execution_id, timeout=args.timeout)
        _print_execution(execution)
        return 0 if execution.state == "succeeded" else EXIT_FAILED


def cmd_get(args: argparse.Namespace) -> int:
    with Client(args.server) as client:
        _print_execution(client.get(args.execution_id))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with Client(args.server) as client:
        _print_execution(client.cancel(args.execution_id))
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    with Client(args.server) as client:
        if args.schedule_command == "add":
            stored = client.schedule(
                args.task, args.name, args.cron, payload=_json_flag(args.payload, "--payload"),
                timezone=args.timezone, missed=args.missed, missed_limit=args.missed_limit,
            )
            print(json.dumps(stored.to_dict(), indent=2))
        elif args.schedule_command == "rm":
            cancelled = client.unschedule(args.task, args.name, missing_ok=False)
            print(f"deleted schedule {args.task}/{args.name}; cancelled {cancelled} pending fires")
        else:
            _print_schedules(client.schedules(args.task), as_json=args.json)
    return 0


def _print_schedules(schedules: list[Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps([s.to_dict() for s in schedules], indent=2))
        return
    rows = [("TASK", "NAME", "CRON", "TIMEZONE", "MISSED", "NEXT FIRE", "STATIC")]
    rows += [
        (s.task, s.name, s.cron, s.timezone, s.missed,
         s.next_fire_at.isoformat() if s.next_fire_at else "", "yes" if s.static else "no")
        for s in schedules
    ]
    print_table(rows)


def print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


COMMANDS = {
    "server": cmd_server,
    "worker": cmd_worker,
    "dev": cmd_dev,
    "invoke": cmd_invoke,
    "get": cmd_get,
    "cancel": cmd_cancel,
    "schedule": cmd_schedule,
}


def _configure_logging(level: str, fmt: str) -> None:
    from .logs import configure

    configure(level, fmt)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.log_level, args.log_format)
    try:
        return COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"conductor {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ConductorError, TimeoutError) as exc:
        print(f"conductor {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except grpc.RpcError as exc:
        where = getattr(args, "server", "the coordinator")
        code = exc.code().name if isinstance(exc, grpc.Call) else "error"
        details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
        print(f"conductor {args.command}: {where}: {code}: {details}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
