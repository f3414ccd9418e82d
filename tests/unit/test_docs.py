"""The docs' snippets work: alert rules pass promtool, Python snippets compile (and run, when
they need no coordinator), `conductor` command lines parse, and the README's invoke table
lists exactly the options of `conductor invoke --help`."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conductor_cli.main import build_parser
from tests.conftest import ROOT

PAGES = [
    ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "examples/node/README.md"
]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
#: a Python snippet that talks to a coordinator (or imports the reader's own module) is only
#: compiled; the others are run in a fresh interpreter
NEEDS_A_COORDINATOR = re.compile(r"Client\(|channel\(|Worker\(|\bclient\.|myapp")
PRELUDE = "from conductor_worker import *\n"


def snippets(language: str) -> list[tuple[str, str]]:
    """(page:line, text) of every fenced block in `language`, in every page."""
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in FENCE.finditer(text):
            if match.group(1) == language:
                line = text[: match.start()].count("\n") + 1
                found.append((f"{page.relative_to(ROOT)}:{line}", match.group(2)))
    return found


def _ids(found: list[tuple[str, str]]) -> list[str]:
    return [where for where, _ in found]


PYTHON = snippets("python")
RULES = [(where, text) for where, text in snippets("yaml") if text.startswith("groups:")]
SHELL = snippets("sh")


def test_the_pages_have_snippets_to_check() -> None:
    assert len(PYTHON) >= 10 and RULES and len(SHELL) >= 10


@pytest.mark.parametrize(("where", "text"), RULES, ids=_ids(RULES))
def test_alert_rules_pass_promtool(where: str, text: str, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        assert not os.environ.get("CI"), "promtool is missing: .ci/run installs it"
        pytest.skip("promtool not on PATH (Debian package prometheus)")
    rules = tmp_path / "rules.yml"
    rules.write_text(text)
    out = subprocess.run(
        [promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, f"{where}: {out.stdout}{out.stderr}"
    assert "SUCCESS" in out.stdout + out.stderr


@pytest.mark.parametrize(("where", "text"), PYTHON, ids=_ids(PYTHON))
def test_python_snippets_compile_and_run(where: str, text: str) -> None:
    compile(text, where, "exec")
    if NEEDS_A_COORDINATOR.search(text):
        return
    out = subprocess.run(
        [sys.executable, "-c", PRELUDE + text],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert out.returncode == 0, f"{where}:\n{out.stderr}"


def command_lines() -> list[tuple[str, list[str]]]:
    """Every `conductor ...` line of the shell snippets, as arguments (a lone "..." dropped)."""
    found = []
    for where, text in SHELL:
        for line in text.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip().removesuffix("&").strip()
            words = shlex.split(line) if line else []
            if words and Path(words[0]).name == "conductor":
                found.append((where, [w for w in words[1:] if w != "..."]))
    return found


COMMANDS = command_lines()


@pytest.mark.parametrize(("where", "args"), COMMANDS, ids=[" ".join(a[:2]) for _, a in COMMANDS])
def test_conductor_command_lines_in_the_docs_parse(where: str, args: list[str]) -> None:
    try:
        build_parser().parse_args(args)
    except SystemExit as exc:
        pytest.fail(f"{where}: `conductor {shlex.join(args)}` does not parse (exit {exc.code})")


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n### ", start + len(heading))
    return text[start:end]


def test_readme_invoke_table_matches_invoke_help() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.choices and "invoke" in a.choices)
    invoke = subparsers.choices["invoke"]  # type: ignore[index]
    options = {
        o for action in invoke._actions for o in action.option_strings if o.startswith("--")
    } - {"--help"}
    table = _section((ROOT / "README.md").read_text(), "### `conductor invoke TASK`")
    rows = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `--")]
    documented = {o for row in rows for o in re.findall(r"`(--[a-z-]+)", row)}
    documented |= {o for row in rows for o in re.findall(r", `(--[a-z-]+)`", row)}
    assert documented == options
