"""What the coordinators see: `conductor status` (one look at everything), `conductor workers`
(connected workers) and `conductor queues`."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

import grpc

from conductor_worker import ConductorError

from .connection import add_server_flags, client
from .flags import EXIT_FAILED, bounded_float
from .output import print_table, when

if TYPE_CHECKING:
    from .flags import Subcommands


def add_status(sub: Subcommands) -> None:
    status = sub.add_parser(
        "status", help="is the coordinator reachable; its database, data dir, workers, and "
        "tasks no connected worker serves (exit 1 when unreachable or its database is down)")
    status.add_argument("--timeout", type=bounded_float(0.1, 600), default=3.0,
                        help="seconds to wait for the coordinator (default 3)")
    status.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_server_flags(status)
    status.set_defaults(run=run_status)


def add_workers(sub: Subcommands) -> None:
    workers = sub.add_parser("workers", help="list connected workers")
    workers.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_server_flags(workers)
    workers.set_defaults(run=run_workers)


def add_queues(sub: Subcommands) -> None:
    queues = sub.add_parser("queues", help="queue depth and oldest ready age per task")
    queues.add_argument("--json", action="store_true", help="print JSON instead of a table")
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


def run_status(args: argparse.Namespace) -> int:
    try:
        with client(args, timeout=args.timeout) as conductor:
            status = conductor.status()
            workers = conductor.workers()
            queues = conductor.queues()
    except (ConductorError, TimeoutError, grpc.RpcError) as exc:
        why = (f"{exc.code().name}: {exc.details()}" if isinstance(exc, grpc.Call)
               else str(exc) or type(exc).__name__)
        if args.json:
            print(json.dumps({"coordinator": args.server, "reachable": False, "error": why},
                             indent=2))
        else:
            print(f"coordinator  {args.server}: unreachable ({why})")
        return EXIT_FAILED
    served = {t for w in workers for t in w.tasks}
    unserved = [q for q in queues if q.task not in served]
    if args.json:
        print(json.dumps({
            "coordinator": args.server, "reachable": True, **vars(status),
            "workers": [vars(w) for w in workers],
            "unserved_tasks": [vars(q) for q in unserved],
        }, indent=2, default=str))
        return 0 if status.database_ok else EXIT_FAILED
    database = "ok" if status.database_ok else f"NOT ANSWERING: {status.database_error}"
    rows = [
        ("coordinator", f"{args.server}: reachable (conductor {status.version}, {status.name})"),
        ("database", f"{status.database}: {database}"),
        ("data dir", status.data_dir or "- (external database)"),
        ("workers", f"{len(workers)} connected" + "".join(
            f"\n  {w.worker_id} on {w.hostname}: {', '.join(w.tasks)} ({w.leases} leases)"
            for w in workers)),
        ("tasks", f"{len(queues)} registered; " + (
            "every one served by a connected worker" if not unserved else
            "not served by any connected worker:" + "".join(
                f"\n  {q.task} ({q.ready} ready, {q.waiting} waiting)" for q in unserved))),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")
    return 0 if status.database_ok else EXIT_FAILED
