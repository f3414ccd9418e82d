"""The SDK (conductor_worker) and the coordinator (conductor_server) never import each other;
only the command (conductor_cli) uses both, and it loads the coordinator only to run one."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: package -> the top-level packages it must not import
FORBIDDEN = {
    "conductor_worker": {"conductor_server", "conductor_cli"},
    "conductor_server": {"conductor_worker", "conductor_cli"},
    "conductor_cli": {"conductor_server"},  # until `server` or `dev` runs
}
#: the `python -m` entry points: they hand over to conductor_cli and import nothing else
ENTRY_POINTS = ("conductor_worker/__main__.py", "conductor_server/__main__.py")


def _sources(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


def _modules(package: str) -> list[str]:
    """Every module of the package (its `__main__` would run the command, so not that)."""
    names = []
    for path in _sources(package):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__main__":
            continue
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


def _loaded_after_importing(modules: list[str]) -> set[str]:
    """The top-level conductor packages in sys.modules of a fresh interpreter that imported
    `modules` (in a subprocess: this one has imported everything already)."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True)
    return {m for m in json.loads(out.stdout) if m.startswith("conductor")}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_importing_a_package_loads_none_of_the_forbidden(package: str) -> None:
    modules = _modules(package)
    assert len(modules) > 3, modules
    loaded = _loaded_after_importing(modules)
    assert package in loaded
    assert not loaded & FORBIDDEN[package], f"{package} loads {sorted(loaded & FORBIDDEN[package])}"


def _imported(path: Path) -> set[str]:
    """Top-level names of every import in a file, function-level (lazy) ones included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", ["conductor_server", "conductor_worker"])
def test_no_import_of_the_other_side_even_inside_a_function(package: str) -> None:
    offenders = {}
    for path in _sources(package):
        forbidden = set(FORBIDDEN[package])
        if str(path.relative_to(ROOT)) in ENTRY_POINTS:
            forbidden.discard("conductor_cli")
        if found := _imported(path) & forbidden:
            offenders[str(path.relative_to(ROOT))] = sorted(found)
    assert offenders == {}


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_entry_points_hand_over_to_the_cli(entry_point: str) -> None:
    imported = _imported(ROOT / entry_point)  # (os: conductor_worker's re-exec, see there)
    assert "conductor_cli" in imported and imported <= {"os", "sys", "conductor_cli"}


def _help(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", *args, "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=True)
    return out.stdout


def test_python_m_of_each_package_is_the_conductor_command() -> None:
    command = _help("conductor_cli")
    assert command.startswith("usage: conductor ")
    assert _help("conductor_worker") == command
    server = _help("conductor_server")
    assert server.startswith("usage: conductor server ")
    assert _help("conductor_cli", "server") == server
