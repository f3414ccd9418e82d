"""Every option and argument of every `conductor` command has help text."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from conductor_cli.main import build_parser


def _parsers(parser: argparse.ArgumentParser, path: str) -> Iterator[
        tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:  # argparse keeps its parsers' actions only here
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_option_of_every_command_has_help() -> None:
    missing = []
    commands = []
    for path, parser in _parsers(build_parser(), "conductor"):
        commands.append(path)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                subcommands = {a.dest for a in action._choices_actions}
                missing += [f"{path} {c}" for c in action.choices if c not in subcommands]
                continue
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, missing
    assert "conductor executions watch" in commands and "conductor status" in commands
    assert len(commands) > 15
