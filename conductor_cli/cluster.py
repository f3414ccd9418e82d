"""What the coordinators see: `conductor workers` (connected workers) and `conductor queues`."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from .connection import add_server_flags, client
from .output import print_table, when

if TYPE_CHECKING:
    from .flags import Subcommands


def add_workers(sub: Subcommands) -> None:
    workers = sub.add_parser("workers", help="list connected workers")
    workers.add_argument("--json", action="store_true")
    add_server_flags(workers)
    workers.set_defaults(run=run_workers)


def add_queues(sub: Subcommands) -> None:
    queues = sub.add_parser("queues", help="queue depth and oldest ready age per task")
    queues.add_argument("--json", action="store_true")
    add_server_flags(queues)
    queues.set_defaults(run=run_queues)


def run_workers(args: argparse.Namespace) -> int:
    with client(args) as conductor:
        found = conductor.workers()
    if args.json:
        print(json.dumps([vars(w) for w in found], indent=2, default=str))
        return 0
    rows = [("WORKER", "HOST", "PID", "TASKS", "LEASES", "LAST SEEN", "COORDINATOR")]
    rows += [
        (w.worker_id, w.hostname, str(w.pid), ",".join(w.tasks), str(w.leases),
         when(w.last_seen), w.coordinator)
        for w in found
    ]
    print_table(rows)
    return 0


def run_queues(args: argparse.Namespace) -> int:
    with client(args) as conductor:
        found = conductor.queues()
    if args.json:
        print(json.dumps([vars(q) for q in found], indent=2))
        return 0
    rows = [("TASK", "READY", "WAITING", "RUNNING", "OLDEST READY", "WORKERS")]
    rows += [
        (q.task, str(q.ready), str(q.waiting), str(q.running),
         f"{q.oldest_ready_age_seconds:.1f}s",
         str(q.live_workers) if q.live_workers else "0 (no live worker)")
        for q in found
    ]
    print_table(rows)
    return 0
