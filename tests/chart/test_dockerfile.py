"""Sanity of the Dockerfile and .dockerignore (no Docker engine needed): base image, exposed
ports against the chart's defaults, the user against the chart's security context, and that
everything the build copies exists and is in the build context."""

from __future__ import annotations

import fnmatch
import json
import tomllib

import pytest

from tests.chart.chart_lib import ROOT, default_values

Instruction = tuple[str, str]


def instructions() -> list[Instruction]:
    """(INSTRUCTION, arguments) pairs, comments dropped and continuation lines joined."""
    result: list[Instruction] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        result.append((keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends with a continuation"
    return result


def final_stage() -> list[Instruction]:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` out of the context (later patterns win; a pattern
    also matches everything under a matching folder; `**/` matches at any depth)."""
    ignored = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        candidates = [pattern]
        if pattern.startswith("**/"):
            candidates.append(pattern[3:])
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(prefix, c) for prefix in prefixes for c in candidates):
            ignored = not negate
    return ignored


def test_base_image_is_python_311_slim() -> None:
    bases = [args.split()[0] for keyword, args in instructions() if keyword == "FROM"]
    assert bases and all(base == "python:3.11-slim" for base in bases)


def test_exposed_ports_match_the_chart_defaults() -> None:
    exposed = {
        int(port.split("/")[0])
        for keyword, args in final_stage()
        if keyword == "EXPOSE"
        for port in args.split()
    }
    coordinator = default_values()["coordinator"]
    assert exposed == {coordinator["port"], coordinator["metricsPort"]}


def test_entrypoint_is_the_conductor_command() -> None:
    entrypoints = [args for keyword, args in final_stage() if keyword == "ENTRYPOINT"]
    assert len(entrypoints) == 1
    assert json.loads(entrypoints[0]) == ["conductor"], "exec form, so signals reach conductor"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "conductor" in scripts


def test_runs_as_the_non_root_user_of_the_chart() -> None:
    users = [args for keyword, args in final_stage() if keyword == "USER"]
    assert users, "the image runs as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, "numeric, so that runAsNonRoot can check it"
    values = default_values()
    for component in ("coordinator", "worker"):
        context = values[component]["podSecurityContext"]
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == int(uid)
        if gid:
            assert context["runAsGroup"] == int(gid)


def copied_sources() -> list[str]:
    sources = []
    for keyword, args in instructions():
        if keyword != "COPY" or "--from=" in args:
            continue
        words = [w for w in args.split() if not w.startswith("--")]
        sources += words[:-1]
    return [s.rstrip("/") or "." for s in sources]


def test_copied_paths_exist_and_are_in_the_build_context() -> None:
    sources = copied_sources()
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such path"
        assert not dockerignored(source), f"COPY {source}: excluded by .dockerignore"


def test_everything_the_package_is_built_from_is_copied() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    top_level = {p.split(".")[0] for p in packages}
    needed = {"pyproject.toml", pyproject["project"]["readme"], *top_level}
    assert needed <= set(copied_sources())


@pytest.mark.parametrize(
    "path", [".git", ".venv", "tests", "charts", "conductor/__pycache__", "x.egg-info"]
)
def test_dockerignore_keeps_out(path: str) -> None:
    assert dockerignored(path)


def test_dockerignore_keeps_sources_in() -> None:
    assert not dockerignored("conductor_server/sql/migrations")
    assert not dockerignored("conductor/v1/client_pb2.py")
