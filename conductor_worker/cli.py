"""The `conductor` command: server, worker, dev, invoke, get, cancel."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
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


def cmd_invoke(args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.payload)
    except ValueError as exc:
        print(f"conductor invoke: --payload is not valid JSON: {exc}", file=sys.stderr)
        return EXIT_USAGE
    with Client(args.server) as client:
        execution_id = client.invoke(
            args.task, payload, delay=args.delay, priority=args.priority,
            dedupe_key=args.dedupe_key,
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


COMMANDS = {
    "server": cmd_server,
    "worker": cmd_worker,
    "dev": cmd_dev,
    "invoke": cmd_invoke,
    "get": cmd_get,
    "cancel": cmd_cancel,
}


def _configure_logging(level: str, fmt: str) -> None:
    from .logs import configure

    configure(level, fmt)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.log_level, args.log_format)
    try:
        return COMMANDS[args.command](args)
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
