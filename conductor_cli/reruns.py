"""`conductor rerun ID [--from-step NAME]` (a new execution) and `conductor retry ID` (a
failed or cancelled one again, in place)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .connection import add_server_flags, client
from .flags import json_flag
from .output import print_execution

if TYPE_CHECKING:
    from .flags import Subcommands


def add_rerun(sub: Subcommands) -> None:
    rerun = sub.add_parser(
        "rerun", help="run a finished execution again as a new one (optionally from a step)"
    )
    rerun.add_argument("execution_id")
    rerun.add_argument("--from-step", metavar="NAME",
                       help="copy the steps recorded before NAME; it and later steps run")
    rerun.add_argument("--payload", help="JSON payload of the new execution (default: the "
                       "original's)")
    add_server_flags(rerun)
    rerun.set_defaults(run=run_rerun)


def add_retry(sub: Subcommands) -> None:
    retry = sub.add_parser(
        "retry", help="run a failed or cancelled execution again (its recorded steps kept)"
    )
    retry.add_argument("execution_id")
    add_server_flags(retry)
    retry.set_defaults(run=run_retry)


def run_rerun(args: argparse.Namespace) -> int:
    with client(args) as conductor:
        if args.payload is None:
            execution = conductor.rerun(args.execution_id, from_step=args.from_step)
        else:
            payload = json_flag(args.payload, "--payload")
            execution = conductor.rerun(args.execution_id, from_step=args.from_step,
                                        payload=payload)
        print_execution(execution)
    return 0


def run_retry(args: argparse.Namespace) -> int:
    with client(args) as conductor:
        print_execution(conductor.retry(args.execution_id))
    return 0
