"""`conductor bulk cancel|retry|delete` with a filter: prints how many executions match
first, then acts (or, with --dry-run, only counts)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .connection import add_server_flags, client
from .flags import time_flag

if TYPE_CHECKING:
    from .flags import Subcommands

_STATES = ["pending", "running", "succeeded", "failed", "cancelled"]
_DONE = {"cancel": "cancelled", "retry": "retried", "delete": "deleted"}


def add_bulk(sub: Subcommands) -> None:
    bulk = sub.add_parser("bulk", help="cancel, retry or delete every execution matching a "
                          "filter")
    actions = bulk.add_subparsers(dest="bulk_action", required=True, metavar="ACTION")
    for action, text in (
        ("cancel", "cancel pending and running executions"),
        ("retry", "retry failed and cancelled executions in place"),
        ("delete", "delete finished executions with their steps and attempts"),
    ):
        parser = actions.add_parser(action, help=text)
        parser.add_argument("--task")
        parser.add_argument("--state", action="append", choices=_STATES)
        parser.add_argument("--queue")
        parser.add_argument("--created-after", metavar="TIME", help="ISO 8601, with offset")
        parser.add_argument("--created-before", metavar="TIME", help="ISO 8601, with offset")
        parser.add_argument("--dry-run", action="store_true", help="only count")
        if action == "delete":
            parser.add_argument("--all", action="store_true",
                                help="allow an empty filter (every finished execution)")
        add_server_flags(parser)
    bulk.set_defaults(run=run_bulk)


def run_bulk(args: argparse.Namespace) -> int:
    action = args.bulk_action
    options = {
        "task": args.task,
        "state": args.state,
        "queue": args.queue,
        "created_after": time_flag(args.created_after, "--created-after"),
        "created_before": time_flag(args.created_before, "--created-before"),
        "all": getattr(args, "all", False),
    }
    with client(args) as conductor:
        counted = conductor.bulk(action, dry_run=True, **options)
        print(f"{counted.matched} matching execution(s)")
        if args.dry_run or not counted.matched:
            return 0
        done = conductor.bulk(action, **options)
    print(f"{done.changed} {_DONE[action]}")
    return 0
