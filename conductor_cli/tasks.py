"""`conductor tasks ls` (registered tasks, who serves them, stale ones) and `conductor tasks
rm` / `prune` (remove tasks nobody serves)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from conductor_worker import Client, ConductorError

from .connection import add_server_flags, client
from .flags import EXIT_FAILED
from .output import print_table, when

if TYPE_CHECKING:
    from .flags import Subcommands


def add_tasks(sub: Subcommands) -> None:
    tasks = sub.add_parser("tasks", help="registered tasks and the workers serving them")
    actions = tasks.add_subparsers(dest="tasks_command", required=True, metavar="ACTION")
    ls = actions.add_parser("ls", help="every registered task, its workers, when last seen")
    ls.add_argument("--json", action="store_true")
    add_server_flags(ls)
    rm = actions.add_parser("rm", help="remove tasks nobody serves (no executions left)")
    rm.add_argument("names", nargs="+", metavar="NAME")
    add_server_flags(rm)
    prune = actions.add_parser("prune", help="remove every stale task without executions")
    prune.add_argument("--dry-run", action="store_true", help="only list them")
    add_server_flags(prune)
    tasks.set_defaults(run=run_tasks)


def _seconds(value: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{value / size:g}{unit}"
    return f"{value:g}s"


def run_tasks(args: argparse.Namespace) -> int:
    with client(args) as conductor:
        if args.tasks_command == "ls":
            return _list(conductor, args.json)
        if args.tasks_command == "rm":
            return _remove(conductor, args.names)
        stale = [t.name for t in conductor.tasks() if t.stale]
        if args.dry_run:
            print("\n".join(stale) if stale else "no stale tasks")
            return 0
        return _remove(conductor, stale)


def _list(conductor: Client, as_json: bool) -> int:
    found = conductor.tasks()
    if as_json:
        print(json.dumps([vars(t) for t in found], indent=2, default=str))
        return 0
    rows = [("TASK", "WORKERS", "LAST SEEN", "STATUS", "KEEP S/F/C", "REDACT")]
    rows += [
        (t.name, str(len(t.workers)), when(t.last_seen),
         "stale" if t.stale else ("serving" if t.workers else "no live worker"),
         "/".join(_seconds(t.retention[s]) for s in ("succeeded", "failed", "cancelled")),
         "never" if t.redact_after is None else _seconds(t.redact_after))
        for t in found
    ]
    print_table(rows)
    return 0


def _remove(conductor: Client, names: list[str]) -> int:
    failed = 0
    for name in names:
        try:
            schedules = conductor.delete_task(name)
        except ConductorError as exc:
            print(f"{name}: not removed: {exc}")
            failed += 1
            continue
        print(f"{name}: removed" + (f" with {schedules} schedule(s)" if schedules else ""))
    return EXIT_FAILED if failed else 0
