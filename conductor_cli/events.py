"""Workflow commands: `emit` (an event) and `signal` (an execution)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from .connection import add_server_flags, client
from .flags import json_flag

if TYPE_CHECKING:
    from .flags import Subcommands


def add_emit(sub: Subcommands) -> None:
    emit = sub.add_parser("emit", help="emit an event (runs the tasks subscribed to it)")
    emit.add_argument("event", help="event name, e.g. order.created")
    emit.add_argument("--payload", default="null", help="JSON payload (default: null)")
    emit.add_argument("--dedupe-key", help="emit at most once with this key")
    add_server_flags(emit)
    emit.set_defaults(run=run_emit)


def add_signal(sub: Subcommands) -> None:
    signal = sub.add_parser("signal", help="send a signal to an execution (ctx.wait_for_signal)")
    signal.add_argument("execution_id")
    signal.add_argument("name", help="the signal's name")
    signal.add_argument("--payload", default="null", help="JSON payload (default: null)")
    add_server_flags(signal)
    signal.set_defaults(run=run_signal)


def run_emit(args: argparse.Namespace) -> int:
    payload = json_flag(args.payload, "--payload")
    with client(args) as conductor:
        ids = conductor.emit(args.event, payload, dedupe_key=args.dedupe_key)
    print(json.dumps({"execution_ids": ids}))
    return 0


def run_signal(args: argparse.Namespace) -> int:
    payload = json_flag(args.payload, "--payload")
    with client(args) as conductor:
        conductor.signal(args.execution_id, args.name, payload)
    return 0
