"""The `conductor` command: its parser, wired from one module per command group, and the
errors every command reports in one line (exit 2 for usage, 1 for a failure)."""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn, cast

import grpc

from conductor_worker import ConductorError

from . import (
    bulk,
    cluster,
    events,
    execution_logs,
    executions,
    reruns,
    schedules,
    server,
    tasks,
    ui,
    worker,
)
from .flags import EXIT_FAILED, EXIT_USAGE, UsageError, level
from .logs import configure

if TYPE_CHECKING:
    from .flags import Subcommands

#: every command's parser, in the order `conductor --help` lists them
_COMMANDS = (
    server.add_server,
    worker.add_worker,
    server.add_dev,
    executions.add_invoke,
    schedules.add_schedule,
    executions.add_executions,
    cluster.add_status,
    cluster.add_workers,
    cluster.add_queues,
    executions.add_get,
    executions.add_cancel,
    events.add_emit,
    events.add_signal,
    reruns.add_rerun,
    reruns.add_retry,
    bulk.add_bulk,
    tasks.add_tasks,
    execution_logs.add_logs,
    ui.add_ui,
)


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (exit 2), naming the flag."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="conductor", description="Durable background tasks with a gRPC control plane."
    )
    parser.add_argument("--version", action="version", version=f"conductor {_version()}")
    parser.add_argument("--log-level", type=level,
                        default=os.environ.get("CONDUCTOR_LOG_LEVEL", "INFO"),
                        help="DEBUG, INFO, WARNING or ERROR"
                        " (default: $CONDUCTOR_LOG_LEVEL or INFO)")
    parser.add_argument(
        "--log-format", choices=["text", "json"],
        default=os.environ.get("CONDUCTOR_LOG_FORMAT", "text"),
        help="log lines as text or one JSON object per line (default: $CONDUCTOR_LOG_FORMAT)",
    )
    # the commands' parsers are _Parsers too; the groups need only ArgumentParser of them
    sub = cast("Subcommands", parser.add_subparsers(dest="command", required=True,
                                                    metavar="COMMAND"))
    for add in _COMMANDS:
        add(sub)
    return parser


def _version() -> str:
    """The installed distribution's version."""
    try:
        return importlib.metadata.version("conductor-tasks")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


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
    configure(args.log_level, args.log_format)
    # SIGINT (Ctrl-C) stops every command even when this process started with it ignored
    # (a script's background job, a test runner's worker), where Python installs no handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        result: int = args.run(args)
        return result
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
