"""`conductor worker MODULE`: run the tasks of a module."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from typing import TYPE_CHECKING, Any

from conductor_worker import Task, Worker, flow
from conductor_worker.errors import TaskDefinitionError
from conductor_worker.runtime import load_tasks
from conductor_worker.settings import START_METHODS, PoolSettings

from .connection import add_server_flags
from .flags import auth_token, port, seconds

if TYPE_CHECKING:
    from .flags import Subcommands

log = logging.getLogger(__name__)


class ModuleImportError(Exception):
    """The task module cannot be imported (the message is one line)."""


def import_tasks(module: str) -> list[Task[..., Any]]:
    """The module's tasks, checked, before anything else starts (no connection, no pool
    process, no database): an import that fails is one line naming the module, the error and
    where it happened; --log-level debug logs the traceback."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return load_tasks(module)
    except TaskDefinitionError:
        raise
    except Exception as exc:
        log.debug("importing %s failed", module, exc_info=True)
        raise ModuleImportError(
            f"cannot import the task module {module!r}: {type(exc).__name__}: {exc}"
            f"{_where(exc)} (--log-level debug shows the traceback)"
        ) from None


def _where(exc: BaseException) -> str:
    """' (at path:line)' of the innermost frame outside the import machinery."""
    if isinstance(exc, SyntaxError):
        return ""  # its message names the file and line already
    machinery = (os.sep + "importlib" + os.sep, os.sep + "conductor_worker" + os.sep)
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith("<frozen")
              and not any(part in f.filename for part in machinery)]
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def add_worker_flags(parser: argparse.ArgumentParser) -> None:
    """The module and drain timeout of `worker` and `dev`."""
    parser.add_argument("module", help="Python module that defines the @task functions")
    parser.add_argument(
        "--drain-timeout", type=seconds, default=60.0,
        help="seconds to let running executions reach a checkpoint on SIGTERM (default 60)",
    )
    parser.add_argument(
        "--pool-idle-timeout", type=seconds, metavar="SECONDS",
        help="seconds a pool process may sit idle before it stops, down to the task's"
        " min_processes; 0 keeps them (default: $CONDUCTOR_POOL_IDLE_TIMEOUT or 60)",
    )
    parser.add_argument(
        "--start-method", choices=START_METHODS,
        help="how pool processes start: forked from a server that preloaded the task"
        " modules, or spawned (default: $CONDUCTOR_START_METHOD or forkserver)",
    )


def pool_settings(args: argparse.Namespace) -> PoolSettings:
    """The pool settings from `add_worker_flags`' flags and the environment."""
    return PoolSettings.resolve(start_method=args.start_method,
                                idle_timeout=args.pool_idle_timeout)


def add_worker(sub: Subcommands) -> None:
    worker = sub.add_parser("worker", help="run the tasks of a module")
    add_worker_flags(worker)
    add_server_flags(worker)
    worker.add_argument(
        "--drain", action="store_true",
        help="run everything runnable now, then exit (for tests and one-off batches)",
    )
    worker.add_argument(
        "--queues", type=_queues, metavar="A,B",
        help="take work only from these queues (comma-separated); default: every queue of"
        " the module's tasks",
    )
    worker.add_argument("--metrics-port", type=port,
                        help="serve Prometheus /metrics for this worker and its pool processes")
    worker.set_defaults(run=run_worker)


def run_worker(args: argparse.Namespace) -> int:
    tasks = import_tasks(args.module)
    worker = Worker(tasks, args.server, drain_timeout=args.drain_timeout,
                    log_level=logging.getLogger().level, log_format=args.log_format,
                    drain=args.drain,
                    token=auth_token(args), tls_ca=args.tls_ca, tls_cert=args.tls_cert,
                    tls_key=args.tls_key, metrics_port=args.metrics_port,
                    pool_settings=pool_settings(args), queues=args.queues)
    return worker.run()


def _queues(text: str) -> tuple[str, ...]:
    try:
        return flow.parse_queues(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
