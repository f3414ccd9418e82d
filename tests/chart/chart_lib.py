"""Helpers for the Helm chart tests: files, the values schema, template scanning, helm."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "conductor"
TEMPLATES = CHART / "templates"
CI_VALUES = CHART / "ci"

Json = Any


def load_yaml(path: Path) -> Json:
    return yaml.safe_load(path.read_text())


def default_values() -> dict[str, Json]:
    values = load_yaml(CHART / "values.yaml")
    assert isinstance(values, dict)
    return values


def schema() -> dict[str, Json]:
    import json

    loaded = json.loads((CHART / "values.schema.json").read_text())
    assert isinstance(loaded, dict)
    return loaded


def merge(base: Json, override: Json) -> Json:
    """Helm's coalescing: maps merge key by key, anything else replaces; null deletes."""
    if not (isinstance(base, dict) and isinstance(override, dict)):
        return copy.deepcopy(override)
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif key in merged:
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def with_path(values: Json, dotted: str, value: Json) -> Json:
    """A copy of values with the dotted key set (missing maps are created)."""
    result = copy.deepcopy(values)
    node = result
    *parents, last = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return result


# -- the schema -------------------------------------------------------------------------------


def resolve(node: Json, root: Json) -> Json:
    """Follow local $refs ("#/definitions/name")."""
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"only local $refs are expected, got {ref}"
        target = root
        for part in ref[2:].split("/"):
            target = target[part]
        node = target
    return node


def schema_nodes(node: Json, path: str = "") -> Iterator[tuple[str, Json]]:
    """Every subschema with its location, in the schema as written (refs not followed)."""
    if not isinstance(node, dict):
        return
    yield path, node
    for key in ("properties", "definitions"):
        for name, sub in node.get(key, {}).items():
            yield from schema_nodes(sub, f"{path}/{key}/{name}")
    for key in ("items", "additionalProperties", "if", "then", "else", "not", "propertyNames"):
        if isinstance(node.get(key), dict):
            yield from schema_nodes(node[key], f"{path}/{key}")
    for key in ("oneOf", "anyOf", "allOf"):
        for index, sub in enumerate(node.get(key, [])):
            yield from schema_nodes(sub, f"{path}/{key}/{index}")


def is_object_schema(node: Json) -> bool:
    kind = node.get("type")
    return kind == "object" or (isinstance(kind, list) and "object" in kind)


# -- values paths -------------------------------------------------------------------------------


def leaf_paths(values: Json, schema_node: Json, root: Json, prefix: str = "") -> Iterator[str]:
    """Dotted paths of values.yaml down to the leaves, stopping at free-form maps
    (annotations, resources quantities, Kubernetes objects): those are one leaf each."""
    node = resolve(schema_node, root)
    if isinstance(values, dict) and "properties" in node:
        for key, value in values.items():
            yield from leaf_paths(value, node["properties"][key], root, f"{prefix}{key}.")
    else:
        yield prefix.rstrip(".")


def lookup(values: Json, dotted: str) -> tuple[bool, Json]:
    node = values
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return False, None
        node = node[key]
    return True, node


# -- templates ----------------------------------------------------------------------------------

COMMENT = re.compile(r"\{\{-?\s*/\*.*?\*/\s*-?\}\}", re.DOTALL)
ACTION = re.compile(r"\{\{-?(.*?)-?\}\}", re.DOTALL)
VALUES_REF = re.compile(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
ASSIGN = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)\s*:?=\s*\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
VAR_REF = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
INCLUDE = re.compile(r"\b(?:include|template)\s+\"([^\"]+)\"")
DEFINE = re.compile(r"\bdefine\s+\"([^\"]+)\"")


def template_files() -> list[Path]:
    return sorted(p for p in TEMPLATES.iterdir() if p.is_file())


def actions(text: str) -> list[str]:
    """The actions ({{ ... }}) of a template, comments removed, trimmed."""
    return [m.group(1).strip() for m in ACTION.finditer(COMMENT.sub("", text))]


def values_references(text: str) -> set[str]:
    """Dotted values paths a template reads: .Values.a.b, and $x.c where $x := .Values.a."""
    refs: set[str] = set()
    aliases: dict[str, str] = {}
    for action in actions(text):
        for name, path in ASSIGN.findall(action):
            aliases[name] = path.lstrip(".")
        refs.update(path.lstrip(".") for path in VALUES_REF.findall(action))
        for name, rest in VAR_REF.findall(action):
            if name in aliases:
                refs.add(aliases[name] + rest)
    return refs


# -- helm -----------------------------------------------------------------------------------------


def helm_binary() -> str | None:
    """helm on PATH, or next to the running interpreter (a virtualenv's bin/)."""
    return shutil.which("helm") or shutil.which("helm", path=os.path.dirname(sys.executable))


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    binary = helm_binary()
    assert binary is not None
    result = subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=60, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result


def helm_template(*value_args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return helm("template", "rel", str(CHART), "--namespace", "tasks", *value_args, check=check)


def render(*value_args: str) -> list[dict[str, Json]]:
    """The manifests of `helm template` with these arguments, parsed."""
    out = helm_template(*value_args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(manifests: list[dict[str, Json]], kind: str, name_suffix: str = "") -> dict[str, Json]:
    found = [
        m for m in manifests
        if m["kind"] == kind and m["metadata"]["name"].endswith(name_suffix)
    ]
    assert len(found) == 1, f"expected one {kind} *{name_suffix}, found {len(found)}"
    return found[0]
