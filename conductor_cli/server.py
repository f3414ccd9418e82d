"""`conductor server` (a coordinator) and `conductor dev` (embedded database, coordinator and
worker in one process). The coordinator is imported only when one of them runs."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from conductor_worker import Worker

from .flags import UsageError, auth_token, port
from .reload import Reloader, watched_folder
from .worker import add_worker_flags, import_tasks, pool_settings

if TYPE_CHECKING:
    from conductor_server.settings import Settings
    from conductor_ui import UIServer

    from .flags import Subcommands

#: coordinator limit flags: (flag, type, help); the settings field is the flag's name
_LIMIT_FLAGS = (
    ("max-result-bytes", int, "largest handler result, bytes of JSON (default 1 MiB)"),
    ("max-step-result-bytes", int, "largest step result, bytes of JSON (default 1 MiB)"),
    ("max-steps-bytes", int, "most bytes of step results per execution (default 16 MiB)"),
    ("max-error-bytes", int, "error messages and tracebacks are cut to this (default 64 KiB)"),
    ("max-log-lines", int, "most ctx.logger lines kept per execution (default 1000)"),
    ("max-log-line-bytes", int, "log lines are cut to this (default 4096)"),
    ("max-name-length", int, "longest task/schedule/step/worker name (default 200)"),
    ("max-register-tasks", int, "most tasks one worker may register (default 1000)"),
    ("max-message-bytes", int, "largest gRPC message received (default: derived, >= 32 MiB)"),
    ("register-timeout", float, "seconds a worker stream may take to send Register (default 10)"),
    ("idle-timeout", float, "seconds an idle connection stays open (default 300)"),
    ("maintenance-batch", int, "executions deleted or redacted per statement (default 1000)"),
    ("vacuum-dead-rows", int, "vacuum a churning table at this many dead rows, checked every "
                              "second (default 10000; 0: autovacuum only)"),
)

#: retention and maintenance flags: durations ("7d", "12h", "90" seconds), read by the
#: coordinator's parser (conductor_server/durations.py)
_RETENTION_FLAGS = (
    ("retention-succeeded", "keep succeeded executions this long (default 7d)"),
    ("retention-failed", "keep failed executions this long (default 30d)"),
    ("retention-cancelled", "keep cancelled executions this long (default 7d)"),
    ("retention-events", "keep emitted events and their dedupe keys this long (default 7d)"),
    ("redact-after", "drop payloads, results and error texts this long after the end "
                     "(default: never)"),
    ("maintenance-interval", "time between retention passes (default 60s)"),
    ("task-stale-after", "mark a task stale after this long without a worker (default 7d)"),
)


def add_server(sub: Subcommands) -> None:
    server = sub.add_parser("server", help="run a coordinator")
    _coordinator_flags(server)
    server.set_defaults(run=run_server)


def add_dev(sub: Subcommands) -> None:
    dev = sub.add_parser(
        "dev", help="embedded database + coordinator + worker in one process (Ctrl-C stops)"
    )
    add_worker_flags(dev)
    dev.add_argument("--reload", action="store_true",
                     help="restart the worker gracefully when a .py file in the task module's "
                     "folder changes (running executions release at their next checkpoint)")
    _coordinator_flags(dev)
    dev.add_argument("--ui-port", type=port,
                     help="port of the dashboard on 127.0.0.1 (default 8080, or a free one when "
                     "8080 is taken; 0: a free one)")
    dev.add_argument("--no-ui", action="store_true", help="do not serve the dashboard")
    dev.set_defaults(run=run_dev)


def _coordinator_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=port,
        help="port to listen on; 0 picks a free one and prints it (default 50051)",
    )
    parser.add_argument(
        "--database-url",
        help="PostgreSQL URL (default: $CONDUCTOR_DATABASE_URL, else an embedded PostgreSQL)",
    )
    parser.add_argument("--data-dir", help="folder of the embedded PostgreSQL")
    parser.add_argument("--lease-timeout", type=float, help="seconds a lease lives (default 30)")
    parser.add_argument("--timeout-grace", type=float,
                        help="seconds past an execution timeout before the coordinator ends"
                        " the attempt itself (default 10)")
    parser.add_argument(
        "--max-payload-bytes", type=int, help="largest accepted payload (default 1 MiB)"
    )
    parser.add_argument("--metrics-port", type=port,
                        help="serve Prometheus /metrics on this port (default: off)")
    for name, kind, text in _LIMIT_FLAGS:
        parser.add_argument(f"--{name}", type=kind, help=text + " (docs/limits.md)")
    parser.add_argument("--shutdown-delay", type=float,
                        help="seconds between reporting NOT_SERVING and closing (default 0)")
    parser.add_argument("--tls-cert", help="server certificate (PEM); with --tls-key serves TLS")
    parser.add_argument("--tls-key", help="server private key (PEM)")
    parser.add_argument("--tls-client-ca", help="require client certificates signed by this CA")
    for name, text in _RETENTION_FLAGS:
        parser.add_argument(f"--{name}", metavar="DURATION", help=text)
    parser.add_argument("--auth-token-file",
                        help="require this bearer token from clients and workers "
                        "(default: $CONDUCTOR_AUTH_TOKEN; off when unset)")


def _settings(args: argparse.Namespace) -> Settings:
    from psycopg.conninfo import conninfo_to_dict

    from conductor_server.durations import parse_duration
    from conductor_server.settings import from_environment

    if args.database_url is not None:
        try:
            conninfo_to_dict(args.database_url)
        except Exception as exc:
            raise UsageError(f"--database-url: not a PostgreSQL URL: {exc}") from exc
    if args.host is not None:
        try:
            socket.getaddrinfo(args.host, None)
        except (OSError, UnicodeError) as exc:
            raise UsageError(f"--host: cannot use {args.host[:100]!r}: {exc}") from exc
    limits = {name.replace("-", "_"): getattr(args, name.replace("-", "_"))
              for name, _, _ in _LIMIT_FLAGS}
    for name, _ in _RETENTION_FLAGS:
        text = getattr(args, name.replace("-", "_"))
        if text is not None:
            try:
                limits[name.replace("-", "_")] = parse_duration(text)
            except ValueError as exc:
                raise UsageError(f"--{name}: {exc}") from None
    try:
        return from_environment(
            host=args.host,
            port=args.port,
            database_url=args.database_url,
            data_dir=Path(args.data_dir) if args.data_dir else None,
            lease_timeout=args.lease_timeout,
            timeout_grace=args.timeout_grace,
            max_payload_bytes=args.max_payload_bytes,
            log_format=args.log_format,
            metrics_port=args.metrics_port,
            shutdown_delay=args.shutdown_delay,
            tls_cert=Path(args.tls_cert) if args.tls_cert else None,
            tls_key=Path(args.tls_key) if args.tls_key else None,
            tls_client_ca=Path(args.tls_client_ca) if args.tls_client_ca else None,
            auth_token=auth_token(args),
            **limits,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def run_server(args: argparse.Namespace) -> int:
    from conductor_server.app import serve

    asyncio.run(serve(_settings(args)))
    return 0


def run_dev(args: argparse.Namespace) -> int:
    tasks = import_tasks(args.module)  # before the database and the coordinator start
    settings = _settings(args)
    from conductor_server.app import CoordinatorThread

    coordinator = CoordinatorThread(settings)
    _stop_on_hangup()
    dashboard = None
    try:
        address = coordinator.start()
        dashboard = None if args.no_ui else _dashboard(args, address)
        if dashboard is not None:
            print(f"conductor dev: dashboard on {dashboard.start()}", flush=True)
        if args.reload:
            return _run_reloading(args, address, sys.modules[args.module].__file__)

        def ready() -> None:
            print(f"conductor dev: coordinator on {address}; Ctrl-C stops", flush=True)

        worker = Worker(tasks, address, drain_timeout=args.drain_timeout,
                        log_level=logging.getLogger().level, log_format=args.log_format,
                        on_connected=ready, token=auth_token(args),
                        pool_settings=pool_settings(args))
        return worker.run()
    finally:
        if dashboard is not None:
            dashboard.stop()
        coordinator.stop()


def _dashboard(args: argparse.Namespace, address: str) -> UIServer:
    """The dashboard for the dev coordinator, on loopback (8080 unless taken or told)."""
    from .connection import Reach
    from .ui import ui_server

    reach = Reach(auth_token(args), None, None, None)
    if args.ui_port is not None:
        return ui_server(address, "127.0.0.1", args.ui_port, reach, login=None)
    try:
        return ui_server(address, "127.0.0.1", 8080, reach, login=None)
    except UsageError:
        return ui_server(address, "127.0.0.1", 0, reach, login=None)


def _run_reloading(args: argparse.Namespace, address: str, module_file: str | None) -> int:
    folder = watched_folder(module_file)
    worker_args = ["--log-level", args.log_level, "--log-format", args.log_format, "worker",
                   args.module, "--server", address, "--drain-timeout", str(args.drain_timeout)]
    if args.auth_token_file:
        worker_args += ["--auth-token-file", args.auth_token_file]
    print(f"conductor dev: coordinator on {address}; reloading on changes in {folder};"
          " Ctrl-C stops", flush=True)
    return Reloader(folder, worker_args, args.drain_timeout).run()


def _stop_on_hangup() -> None:
    """A closed terminal (SIGHUP) stops the dev stack as SIGTERM does, so that nothing is left
    running, the embedded PostgreSQL included: gracefully while the worker runs (it handles
    SIGTERM), else by unwinding through the `finally` that stops the coordinator."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, lambda signum, frame: os.kill(os.getpid(), signal.SIGTERM))
