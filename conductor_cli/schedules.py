"""`conductor schedule add|ls|rm`: cron schedules."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from conductor_worker import Schedule

from .connection import add_server_flags, client
from .flags import bounded_int, json_flag
from .output import print_table

if TYPE_CHECKING:
    from .flags import Subcommands


def add_schedule(sub: Subcommands) -> None:
    schedule = sub.add_parser("schedule", help="manage cron schedules")
    schedule_sub = schedule.add_subparsers(dest="schedule_command", required=True,
                                           metavar="ACTION")
    add = schedule_sub.add_parser("add", help="create or replace a schedule")
    add.add_argument("task", help="task the schedule invokes")
    add.add_argument("name", help="schedule name (unique per task)")
    add.add_argument("--cron", required=True, help='5-field cron expression, e.g. "0 2 * * *"')
    add.add_argument("--timezone", help="IANA time zone of the expression (default UTC)")
    add.add_argument("--payload", default="null", help="JSON payload of each execution")
    add.add_argument("--missed", choices=["latest", "skip", "all"], default="latest",
                     help="fires missed during downtime: run the latest, none, or all")
    add.add_argument("--missed-limit", type=bounded_int(1, 100_000), default=1,
                     help="with --missed all: run at most this many missed fires")
    add_server_flags(add)
    ls = schedule_sub.add_parser("ls", help="list schedules")
    ls.add_argument("task", nargs="?", help="only the schedules of this task")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_server_flags(ls)
    rm = schedule_sub.add_parser("rm", help="delete a schedule and cancel its pending fires")
    rm.add_argument("task", help="task of the schedule")
    rm.add_argument("name", help="schedule name")
    add_server_flags(rm)
    schedule.set_defaults(run=run_schedule)


def run_schedule(args: argparse.Namespace) -> int:
    with client(args) as conductor:
        if args.schedule_command == "add":
            stored = conductor.schedule(
                args.task, args.name, args.cron, payload=json_flag(args.payload, "--payload"),
                timezone=args.timezone, missed=args.missed, missed_limit=args.missed_limit,
            )
            print(json.dumps(stored.to_dict(), indent=2))
        elif args.schedule_command == "rm":
            cancelled = conductor.unschedule(args.task, args.name, missing_ok=False)
            print(f"deleted schedule {args.task}/{args.name}; cancelled {cancelled} pending fires")
        else:
            _print_schedules(conductor.schedules(args.task), as_json=args.json)
    return 0


def _print_schedules(schedules: list[Schedule], as_json: bool) -> None:
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
