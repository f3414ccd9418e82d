"""`conductor worker MODULE`: run the tasks of a module."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING

from conductor_worker import Worker
from conductor_worker.settings import START_METHODS, PoolSettings

from .connection import add_server_flags
from .flags import auth_token, port, seconds

if TYPE_CHECKING:
    from .flags import Subcommands


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
    worker.add_argument("--metrics-port", type=port,
                        help="serve Prometheus /metrics for this worker and its pool processes")
    worker.set_defaults(run=run_worker)


def run_worker(args: argparse.Namespace) -> int:
    sys.path.insert(0, os.getcwd())
    worker = Worker(args.module, args.server, drain_timeout=args.drain_timeout,
                    log_level=logging.getLogger().level, drain=args.drain,
                    token=auth_token(args), tls_ca=args.tls_ca, tls_cert=args.tls_cert,
                    tls_key=args.tls_key, metrics_port=args.metrics_port,
                    pool_settings=pool_settings(args))
    return worker.run()
