"""A worker process for the benchmark: some of bench/tasks.py's tasks, logging warnings only.

    python -m bench.worker --server HOST:PORT bench-noop [bench-steps ...]

Like `conductor --log-level WARNING worker bench.tasks`, but registers only the named tasks.
"""

from __future__ import annotations

import argparse
import logging
import sys

from conductor_cli.logs import configure
from conductor_worker import Worker

from . import tasks as bench_tasks
from .tasks import registered_bench_tasks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True)
    parser.add_argument("--drain-timeout", type=float, default=10.0)
    parser.add_argument("tasks", nargs="+", help="task names from bench/tasks.py")
    args = parser.parse_args(argv)
    configure("WARNING", "text")
    known = registered_bench_tasks()
    unknown = [name for name in args.tasks if name not in known]
    if unknown:
        parser.error(f"unknown tasks {unknown}; {bench_tasks.__name__} has {sorted(known)}")
    worker = Worker(
        [known[name] for name in args.tasks],
        args.server,
        drain_timeout=args.drain_timeout,
        log_level=logging.WARNING,
    )
    return worker.run()


if __name__ == "__main__":
    sys.exit(main())
