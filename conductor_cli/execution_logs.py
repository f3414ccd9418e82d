"""`conductor logs ID`: the lines an execution's handler logged through ctx.logger.

Workers forward those lines to their coordinator, which keeps them with the execution
(bounded: --max-log-lines per execution, each cut to --max-log-line-bytes; deleted with it).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING

from conductor_worker.records import LogEntry

from .connection import add_server_flags, client
from .flags import bounded_float
from .output import when

if TYPE_CHECKING:
    from .flags import Subcommands


def add_logs(sub: Subcommands) -> None:
    logs = sub.add_parser("logs", help="print the lines an execution's handler logged "
                          "(ctx.logger)")
    logs.add_argument("execution_id", help="the execution's id")
    logs.add_argument("-f", "--follow", action="store_true",
                      help="keep printing new lines until the execution finishes")
    logs.add_argument("--interval", type=bounded_float(0.2, 3600), default=1.0,
                      help="with --follow: seconds between two looks (default 1)")
    logs.add_argument("--json", action="store_true", help="one JSON object per line")
    add_server_flags(logs)
    logs.set_defaults(run=run_logs)


def run_logs(args: argparse.Namespace) -> int:
    after = 0
    with client(args) as conductor:
        while True:
            finished = conductor.get(args.execution_id).finished if args.follow else True
            for line in conductor.logs(args.execution_id, after=after):
                print(_format(line, args.json), flush=True)
                after = line.sequence
            if finished:
                return 0
            time.sleep(args.interval)


def _format(line: LogEntry, as_json: bool) -> str:
    if as_json:
        return json.dumps({"sequence": line.sequence, "attempt": line.attempt,
                           "level": line.level, "message": line.message,
                           "logged_at": line.logged_at.isoformat()})
    return f"{when(line.logged_at)} attempt {line.attempt} {line.level} {line.message}"
