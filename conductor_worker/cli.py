"""The `conductor` command: server, worker, dev, invoke, get, cancel."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

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
    parser.add_argument("--tls-ca", help="CA of the coordinator's certificate; turns TLS on "
                        "(default: $CONDUCTOR_TLS_CA)")
    parser.add_argument("--tls-cert", help="client certificate, if the coordinator asks for one")
    parser.add_argument("--tls-key", help="key of the client certificate")
    parser.add_argument("--auth-token-file",
                        help="file holding the bearer token (default: $CONDUCTOR_AUTH_TOKEN)")


def _token(args: argparse.Namespace) -> str | None:
    path = getattr(args, "auth_token_file", None)
    if not path:
        return None
    try:
        token = Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or exc
        raise UsageError(f"--auth-token-file: cannot read {path}: {why}") from exc
    if not token:
        raise UsageError(f"--auth-token-file: {path} is empty")
    return token


def _client(args: argparse.Namespace) -> Client:
    for flag, path in (("--tls-ca", args.tls_ca), ("--tls-cert", args.tls_cert),
                       ("--tls-key", args.tls_key)):
        if path is not None and not Path(path).is_file():
            raise UsageError(f"{flag}: {path} is not a readable file")
    if (args.tls_cert is None) != (args.tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    return Client(args.server, token=_token(args), tls_ca=args.tls_ca,
                  tls_cert=args.tls_cert, tls_key=args.tls_key)


def _coordinator_args(parser: argparse.ArgumentParser, default_port: int | None) -> None:
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=_port, default=default_port,
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
    parser.add_argument("--metrics-port", type=_port,
                        help="serve Prometheus /metrics on this port (default: off)")
    for name, kind, text in _LIMIT_FLAGS:
        parser.add_argument(f"--{name}", type=kind, help=text + " (docs/limits.md)")
    parser.add_argument("--shutdown-delay", type=float,
                        help="seconds between reporting NOT_SERVING and closing (default 0)")
    parser.add_argument("--tls-cert", help="server certificate (PEM); with --tls-key serves TLS")
    parser.add_argument("--tls-key", help="server private key (PEM)")
    parser.add_argument("--tls-client-ca", help="require client certificates signed by this CA")
    parser.add_argument("--auth-token-file",
                        help="require this bearer token from clients and workers "
                        "(default: $CONDUCTOR_AUTH_TOKEN; off when unset)")


def _worker_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("module", help="Python module that defines the @task functions")
    parser.add_argument(
        "--drain-timeout", type=_seconds, default=60.0,
        help="seconds to let running executions reach a checkpoint on SIGTERM (default 60)",
    )


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (exit 2), naming the flag."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def _bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(text)
        return value

    parse.__name__ = f"integer {low}..{high}"
    return parse


def _seconds(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(text)
    return value


_seconds.__name__ = "number of seconds >= 0"
_int32 = _bounded_int(-(2**31), 2**31 - 1)
_port = _bounded_int(0, 65535)
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _level(text: str) -> str:
    if text.upper() not in _LEVELS:
        raise ValueError(text)
    return text.upper()


_level.__name__ = "log level (" + ", ".join(_LEVELS) + ")"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="conductor", description="Durable background tasks with a gRPC control plane."
    )
    parser.add_argument("--log-level", type=_level,
                        default=os.environ.get("CONDUCTOR_LOG_LEVEL", "INFO"))
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
    worker.add_argument("--metrics-port", type=_port,
                        help="serve Prometheus /metrics for this worker and its pool processes")

    dev = sub.add_parser(
        "dev", help="embedded database + coordinator + worker in one process (Ctrl-C stops)"
    )
    _worker_args(dev)
    _coordinator_args(dev, None)

    invoke = sub.add_parser("invoke", help="invoke a task")
    invoke.add_argument("task", help="task name")
    invoke.add_argument("--payload", default="null", help="JSON payload (default null)")
    invoke.add_argument("--wait", action="store_true", help="wait and print the final execution")
    invoke.add_argument("--timeout", type=_seconds,
                        help="with --wait: give up after N seconds")
    invoke.add_argument("--delay", type=_seconds, help="run no earlier than N seconds from now")
    invoke.add_argument("--priority", type=_int32, default=0, help="higher runs first")
    invoke.add_argument("--dedupe-key", help="reuse an unfinished execution with this key")
    _server_arg(invoke)

    invoke.add_argument("--run-at", help="run no earlier than this ISO 8601 time (with offset)")
    invoke.add_argument("--queue", help="queue name stored with the execution")
    invoke.add_argument("--max-attempts", type=_bounded_int(1, 10_000),
                        help="override the task's max_attempts")

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
    add.add_argument("--missed-limit", type=_bounded_int(1, 100_000), default=1,
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

    executions = sub.add_parser("executions", help="list and inspect executions")
    ex_sub = executions.add_subparsers(dest="executions_command", required=True,
                                       metavar="ACTION")
    ex_ls = ex_sub.add_parser("ls", help="list executions, newest first")
    ex_ls.add_argument("--task")
    ex_ls.add_argument("--state", action="append",
                       choices=["pending", "running", "succeeded", "failed", "cancelled"])
    ex_ls.add_argument("--limit", type=_bounded_int(1, 1000), default=20)
    ex_ls.add_argument("--json", action="store_true")
    _server_arg(ex_ls)
    ex_show = ex_sub.add_parser("show", help="one execution with its steps and error")
    ex_show.add_argument("execution_id")
    ex_show.add_argument("--json", action="store_true")
    _server_arg(ex_show)

    workers = sub.add_parser("workers", help="list connected workers")
    workers.add_argument("--json", action="store_true")
    _server_arg(workers)

    queues = sub.add_parser("queues", help="queue depth and oldest ready age per task")
    queues.add_argument("--json", action="store_true")
    _server_arg(queues)

    get = sub.add_parser("get", help="print an execution as JSON")
    get.add_argument("execution_id")
    _server_arg(get)

    cancel = sub.add_parser("cancel", help="cancel an execution")
    cancel.add_argument("execution_id")
    _server_arg(cancel)
    return parser


#: coordinator limit flags: (flag, type, help); the settings field is the flag's name
_LIMIT_FLAGS = (
    ("max-result-bytes", int, "largest handler result, bytes of JSON (default 1 MiB)"),
    ("max-step-result-bytes", int, "largest step result, bytes of JSON (default 1 MiB)"),
    ("max-steps-bytes", int, "most bytes of step results per execution (default 16 MiB)"),
    ("max-error-bytes", int, "error messages and tracebacks are cut to this (default 64 KiB)"),
    ("max-name-length", int, "longest task/schedule/step/worker name (default 200)"),
    ("max-register-tasks", int, "most tasks one worker may register (default 1000)"),
    ("max-message-bytes", int, "largest gRPC message received (default: derived, >= 32 MiB)"),
    ("register-timeout", float, "seconds a worker stream may take to send Register (default 10)"),
    ("idle-timeout", float, "seconds an idle connection stays open (default 300)"),
)


def _settings(args: argparse.Namespace) -> Any:
    from psycopg.conninfo import conninfo_to_dict

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
    try:
        return from_environment(
            host=args.host,
            port=args.port,
            database_url=args.database_url,
            data_dir=Path(args.data_dir) if args.data_dir else None,
            lease_timeout=args.lease_timeout,
            max_payload_bytes=args.max_payload_bytes,
            log_format=args.log_format,
            metrics_port=args.metrics_port,
            shutdown_delay=args.shutdown_delay,
            tls_cert=Path(args.tls_cert) if args.tls_cert else None,
            tls_key=Path(args.tls_key) if args.tls_key else None,
            tls_client_ca=Path(args.tls_client_ca) if args.tls_client_ca else None,
            auth_token=_token(args),
            **limits,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


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
                    log_level=logging.getLogger().level, drain=args.drain,
                    token=_token(args), tls_ca=args.tls_ca, tls_cert=args.tls_cert,
                    tls_key=args.tls_key, metrics_port=args.metrics_port)
    return worker.run()


def cmd_dev(args: argparse.Namespace) -> int:
    from conductor_server.app import CoordinatorThread

    from .runtime import Worker

    sys.path.insert(0, os.getcwd())
    worker_tasks = args.module
    coordinator = CoordinatorThread(_settings(args))
    _stop_on_hangup()
    try:
        address = coordinator.start()

        def ready() -> None:
            print(f"conductor dev: coordinator on {address}; Ctrl-C stops", flush=True)

        worker = Worker(worker_tasks, address, drain_timeout=args.drain_timeout,
                        log_level=logging.getLogger().level, on_connected=ready,
                        token=_token(args))
        return worker.run()
    finally:
        coordinator.stop()


def _stop_on_hangup() -> None:
    """A closed terminal (SIGHUP) stops the dev stack as SIGTERM does, so that nothing is left
    running, the embedded PostgreSQL included: gracefully while the worker runs (it handles
    SIGTERM), else by unwinding through the `finally` that stops the coordinator."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, lambda signum, frame: os.kill(os.getpid(), signal.SIGTERM))


class UsageError(Exception):
    """A flag's value cannot be used; the message names the flag."""


def _json_flag(text: str, flag: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{flag} is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise UsageError(f"{flag} is nested too deeply") from exc


def _time_flag(text: str | None, flag: str) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(f"{flag}: {text!r} is not an ISO 8601 time") from exc
    if when.tzinfo is None:
        raise UsageError(f"{flag}: {text!r} needs a UTC offset, e.g. 2026-01-31T22:00:00+01:00")
    try:
        return when.astimezone(UTC)
    except OverflowError as exc:
        raise UsageError(f"{flag}: {text!r} is out of range") from exc


def cmd_invoke(args: argparse.Namespace) -> int:
    payload = _json_flag(args.payload, "--payload")
    run_at = _time_flag(args.run_at, "--run-at")
    with _client(args) as client:
        execution_id = client.invoke(
            args.task, payload, delay=args.delay, priority=args.priority,
            dedupe_key=args.dedupe_key, run_at=run_at, queue=args.queue,
            max_attempts=args.max_attempts,
        )
        if not args.wait:
            print(execution_id)
            return 0
        execution = client.wait(execution_id, timeout=args.timeout)
        _print_execution(execution)
        return 0 if execution.state == "succeeded" else EXIT_FAILED


def cmd_get(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print_execution(client.get(args.execution_id))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print_execution(client.cancel(args.execution_id))
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    with _client(args) as client:
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


def cmd_executions(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.executions_command == "show":
            return _show_execution(client, args.execution_id, args.json)
        found = client.list(args.task, state=args.state, limit=args.limit)
    if args.json:
        print(json.dumps([e.to_dict() for e in found], indent=2, default=str))
        return 0
    rows = [("ID", "TASK", "STATE", "ATTEMPT", "CREATED", "FINISHED")]
    rows += [
        (e.id, e.task, e.state, f"{e.attempt}/{e.max_attempts}", _when(e.created_at),
         _when(e.finished_at))
        for e in found
    ]
    print_table(rows)
    return 0


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "-"


def _show_execution(client: Client, execution_id: str, as_json: bool) -> int:
    execution = client.get(execution_id)
    steps = client.steps(execution_id)
    if as_json:
        data = execution.to_dict()
        data["steps"] = [
            {"name": s.name, "result": s.result, "saved_at": s.saved_at.isoformat()}
            for s in steps
        ]
        print(json.dumps(data, indent=2, default=str))
        return 0
    fields = [
        ("id", execution.id), ("task", execution.task), ("state", execution.state),
        ("attempt", f"{execution.attempt}/{execution.max_attempts}"),
        ("schedule", execution.schedule or "-"), ("created", _when(execution.created_at)),
        ("run at", _when(execution.run_at)), ("started", _when(execution.started_at)),
        ("finished", _when(execution.finished_at)),
        ("payload", json.dumps(execution.payload)), ("result", json.dumps(execution.result)),
    ]
    print_table([(f"{k}:", v) for k, v in fields])
    print(f"steps ({len(steps)}):")
    for step in steps:
        print(f"  {_when(step.saved_at)}  {step.name} = {json.dumps(step.result)}")
    if execution.error is not None:
        print(f"error: {execution.error.type}: {execution.error.message}")
        if execution.error.traceback:
            print(execution.error.traceback.rstrip())
    return 0


def cmd_workers(args: argparse.Namespace) -> int:
    with _client(args) as client:
        found = client.workers()
    if args.json:
        print(json.dumps([vars(w) for w in found], indent=2, default=str))
        return 0
    rows = [("WORKER", "HOST", "PID", "TASKS", "LEASES", "LAST SEEN", "COORDINATOR")]
    rows += [
        (w.worker_id, w.hostname, str(w.pid), ",".join(w.tasks), str(w.leases),
         _when(w.last_seen), w.coordinator)
        for w in found
    ]
    print_table(rows)
    return 0


def cmd_queues(args: argparse.Namespace) -> int:
    with _client(args) as client:
        found = client.queues()
    if args.json:
        print(json.dumps([vars(q) for q in found], indent=2))
        return 0
    rows = [("TASK", "READY", "WAITING", "RUNNING", "OLDEST READY")]
    rows += [
        (q.task, str(q.ready), str(q.waiting), str(q.running),
         f"{q.oldest_ready_age_seconds:.1f}s")
        for q in found
    ]
    print_table(rows)
    return 0


COMMANDS = {
    "server": cmd_server,
    "worker": cmd_worker,
    "dev": cmd_dev,
    "invoke": cmd_invoke,
    "get": cmd_get,
    "cancel": cmd_cancel,
    "schedule": cmd_schedule,
    "executions": cmd_executions,
    "workers": cmd_workers,
    "queues": cmd_queues,
}


def _configure_logging(level: str, fmt: str) -> None:
    from .logs import configure

    configure(level, fmt)


def _not_utf8(argv: Sequence[str]) -> str | None:
    """The first argument that is not valid UTF-8 (Python keeps such bytes as surrogates)."""
    for arg in argv:
        try:
            arg.encode()
        except UnicodeEncodeError:
            return arg.encode("utf-8", "backslashreplace").decode()
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    bad = _not_utf8(sys.argv[1:] if argv is None else argv)
    if bad is not None:
        parser.error(f"argument {bad[:80]!r} is not valid UTF-8")
    args = parser.parse_args(argv)
    _configure_logging(args.log_level, args.log_format)
    try:
        return COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"conductor {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ConductorError, TimeoutError) as exc:
        print(f"conductor {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:  # e.g. the coordinator's port is taken: one line, no traceback
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
    except Exception as exc:  # no traceback for the user; it goes to the debug log
        logging.getLogger(__name__).debug("conductor %s failed", args.command, exc_info=True)
        print(f"conductor {args.command}: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILED


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "..."


if __name__ == "__main__":
    sys.exit(main())
