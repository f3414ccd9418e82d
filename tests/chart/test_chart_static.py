"""Checks of charts/conductor that need no helm: values against the schema, the schema's
strictness, templates against values, template block structure, Chart.yaml."""

from __future__ import annotations

import re
import tomllib
from typing import Any

import jsonschema
import pytest

from tests.chart.chart_lib import (
    CHART,
    CI_VALUES,
    DEFINE,
    INCLUDE,
    ROOT,
    actions,
    default_values,
    is_object_schema,
    leaf_paths,
    load_yaml,
    lookup,
    merge,
    resolve,
    schema,
    schema_nodes,
    template_files,
    values_references,
    with_path,
)

# The only places where the schema lets arbitrary keys through: Kubernetes objects passed to
# the manifests as they are (affinity, tolerations, security contexts, volumes, envFrom, an env
# variable's valueFrom) and Helm's `global`. kubernetes-validate checks them in the rendered
# manifests when helm is available.
OPEN_OBJECTS = {
    "/definitions/kubernetesObject",
    "/definitions/kubernetesList/items",
    "/definitions/env/items/properties/valueFrom",
}


def validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(schema())


def errors(values: Any) -> list[str]:
    return [
        f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator().iter_errors(values)
    ]


# -- the schema --------------------------------------------------------------------------------


def test_schema_is_a_valid_draft7_schema() -> None:
    loaded = schema()
    assert loaded["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(loaded)


def test_default_values_validate() -> None:
    assert errors(default_values()) == []


@pytest.mark.parametrize("name", ["default-values.yaml", "full-values.yaml"])
def test_ci_values_validate(name: str) -> None:
    assert errors(merge(default_values(), load_yaml(CI_VALUES / name))) == []


def test_every_object_node_closes_additional_properties() -> None:
    open_nodes = set()
    for path, node in schema_nodes(schema()):
        if not is_object_schema(node):
            continue
        assert "additionalProperties" in node, f"{path or '<root>'} has no additionalProperties"
        extra = node["additionalProperties"]
        if extra is True:
            open_nodes.add(path)
        elif extra is not False:
            # a map (annotations, labels, resource quantities): values typed, no properties
            assert isinstance(extra, dict), path
            assert "properties" not in node, f"{path}: a map with fixed properties"
    assert open_nodes == OPEN_OBJECTS


def test_closed_objects_require_their_properties() -> None:
    """A key deleted by mistake (`--set x=null`) is reported instead of rendering nonsense.
    Only resources (requests/limits) and an env variable (value/valueFrom) have optional keys."""
    optional = {"/definitions/resources", "/definitions/env/items"}
    for path, node in schema_nodes(schema()):
        if node.get("additionalProperties") is False and path not in optional:
            assert set(node.get("required", [])) == set(node["properties"]), path


def _compare_keys(values: Any, node: Any, root: Any, prefix: str, problems: list[str]) -> None:
    node = resolve(node, root)
    if not (isinstance(values, dict) and "properties" in node):
        return
    problems.extend(
        f"values.yaml has {prefix}{key}, the schema does not"
        for key in sorted(set(values) - set(node["properties"]))
    )
    problems.extend(
        f"the schema has {prefix}{key}, values.yaml does not"
        for key in sorted(set(node["properties"]) - set(values))
    )
    for key in set(values) & set(node["properties"]):
        _compare_keys(values[key], node["properties"][key], root, f"{prefix}{key}.", problems)


def test_values_and_schema_have_the_same_keys() -> None:
    problems: list[str] = []
    loaded = schema()
    _compare_keys(default_values(), loaded, loaded, "", problems)
    assert problems == []


def test_every_value_is_documented() -> None:
    """Each value of values.yaml (a key with something after the colon) has a comment just above
    it, or sits inside a key that has one (the timings of a documented probe, the fields of a
    documented security context)."""
    undocumented = []
    ancestors: list[tuple[int, str, bool]] = []  # (indent, key, commented) of enclosing keys
    previous = ""
    for line in (CHART / "values.yaml").read_text().splitlines():
        match = re.match(r"^(\s*)([A-Za-z][A-Za-z0-9]*):(.*)$", line)
        if match:
            indent, key = len(match.group(1)), match.group(2)
            while ancestors and ancestors[-1][0] >= indent:
                ancestors.pop()
            commented = previous.lstrip().startswith("#")
            is_leaf = match.group(3).strip() != ""
            if is_leaf and not commented and not any(c for _, _, c in ancestors):
                undocumented.append(".".join([k for _, k, _ in ancestors] + [key]))
            ancestors.append((indent, key, commented))
        previous = line
    assert undocumented == []


REJECTED = [
    ("coordinator.replicas", 1, "coordinators run at least two"),
    ("replicaCount", 3, "unknown top-level key"),
    ("coordinator.replica", 3, "unknown nested key (typo)"),
    ("worker.enabled", True, "workers without a task module"),
    ("tls.enabled", True, "TLS without a Secret"),
    ("logFormat", "xml", "not a log format"),
    ("coordinator.retention.failed", "30 days", "not a duration"),
    ("coordinator.retention.keep", "7d", "unknown retention key"),
    ("coordinator.port", 70000, "not a port"),
    ("coordinator.metricsPort", "9090", "a port as a string"),
    ("coordinator.pdb.minAvailable", "half", "neither a number nor a percentage"),
    ("coordinator.resources", {"requests": {"cpus": "1"}}, "not a resource name"),
    ("coordinator.resources", {"request": {"cpu": "1"}}, "requests misspelt"),
    ("worker.env", [{"value": "x"}], "an env variable without a name"),
    ("worker.env", [{"name": "N", "value": 5}], "an env value that is not a string"),
    ("worker.module", "my-tasks", "not a Python module name"),
    ("worker.drainTimeout", -1, "negative drain timeout"),
    ("worker.autoscaling.minReplicas", 0, "HPA minReplicas below 1"),
    ("monitoring.serviceMonitor.interval", "30 seconds", "not a duration"),
    ("image.pullPolicy", "Sometimes", "not a pull policy"),
    ("image.repository", "", "no image"),
    ("database.existingSecretKey", "", "an empty Secret key"),
    ("coordinator.service.type", "ExternalName", "not a Service type for pods"),
    ("imagePullSecrets", [{"secret": "x"}], "a pull secret without a name"),
    ("nameOverride", None, "a required key deleted"),
    ("ui.loginToken", "short", "a login token under 16 characters"),
    ("ui.ingress", {**default_values()["ui"]["ingress"], "enabled": True}, "Ingress, no host"),
    ("ui.refresh", 0, "no pause between live looks"),
]


@pytest.mark.parametrize(
    ("path", "value", "why"), REJECTED, ids=[f"{p}={v!r}" for p, v, _ in REJECTED]
)
def test_schema_rejects(path: str, value: Any, why: str) -> None:
    values = with_path(default_values(), path, value)
    if value is None:
        values = merge(default_values(), with_path({}, path, None))
    assert errors(values), f"accepted: {why}"


ACCEPTED = [
    {"worker": {"enabled": True, "module": "acme.tasks"}},
    {"coordinator": {"pdb": {"minAvailable": "50%"}}},
    {"coordinator": {"replicas": 5, "leaseTimeout": 12.5}},
    {"coordinator": {"retention": {"succeeded": "7d", "failed": 86400, "redactAfter": "1.5h"}}},
    {"coordinator": {"resources": {"limits": {"nvidia.com/gpu": 1, "cpu": 2}}}},
    {"tls": {"enabled": True, "secretName": "coordinator-tls"}},
    {"imagePullSecrets": ["regcred", {"name": "other"}]},
    {"worker": {"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}},
    {"global": {"imageRegistry": "mirror.example.com"}},
]


@pytest.mark.parametrize("override", ACCEPTED, ids=lambda o: repr(o)[:60])
def test_schema_accepts(override: dict[str, Any]) -> None:
    assert errors(merge(default_values(), override)) == []


# -- templates against values -----------------------------------------------------------------


def test_templates_reference_only_existing_values() -> None:
    values = default_values()
    missing = []
    for path in template_files():
        for ref in sorted(values_references(path.read_text())):
            found, _ = lookup(values, ref)
            if not found:
                missing.append(f"{path.name}: .Values.{ref}")
    assert missing == []


def test_every_value_is_used_by_a_template() -> None:
    refs: set[str] = set()
    for path in template_files():
        refs |= values_references(path.read_text())
    loaded = schema()
    unused = [
        leaf
        for leaf in leaf_paths(default_values(), loaded, loaded)
        if leaf != "global" and not any(leaf == r or leaf.startswith(r + ".") for r in refs)
    ]
    assert unused == []


def test_reference_scanner_follows_variables() -> None:
    text = '{{- $w := .Values.worker }}{{ $w.image.tag }}{{ .Values.image.repository | quote }}'
    assert values_references(text) == {"worker", "worker.image.tag", "image.repository"}


OPENERS = {"if", "range", "with", "define", "block"}


def test_template_blocks_are_balanced() -> None:
    for path in template_files():
        stack: list[str] = []
        for action in actions(path.read_text()):
            word = action.split(None, 1)[0] if action else ""
            if word in OPENERS:
                stack.append(word)
            elif word == "end":
                assert stack, f"{path.name}: `end` without an open block"
                stack.pop()
            elif word == "else":
                assert stack and stack[-1] in {"if", "with", "range"}, f"{path.name}: stray else"
        assert stack == [], f"{path.name}: unclosed {stack}"


def test_included_templates_are_defined() -> None:
    defined: set[str] = set()
    used: set[tuple[str, str]] = set()
    for path in template_files():
        for action in actions(path.read_text()):
            defined.update(DEFINE.findall(action))
            used.update((path.name, name) for name in INCLUDE.findall(action))
    assert sorted(f"{f}: {n}" for f, n in used if n not in defined) == []


def test_expected_templates_exist() -> None:
    names = {p.name for p in template_files()}
    assert {
        "_helpers.tpl", "NOTES.txt", "coordinator-deployment.yaml", "coordinator-service.yaml",
        "coordinator-pdb.yaml", "worker-deployment.yaml", "worker-service.yaml",
        "worker-hpa.yaml", "secret.yaml", "servicemonitor.yaml", "serviceaccount.yaml",
        "ui-deployment.yaml", "ui-service.yaml", "ui-ingress.yaml",
    } <= names


def test_worker_grace_period_is_checked_against_the_drain_timeout() -> None:
    """Without helm, at least check that the template computes/enforces it."""
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    assert "add $drain 30" in helpers
    assert "lt $grace (add $drain 15)" in helpers and "fail" in helpers
    worker = (CHART / "templates" / "worker-deployment.yaml").read_text()
    assert 'terminationGracePeriodSeconds: {{ include "conductor.workerGracePeriod" . }}' in worker


# -- Chart.yaml and docs ------------------------------------------------------------------------


def test_chart_metadata() -> None:
    chart = load_yaml(CHART / "Chart.yaml")
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "conductor"
    assert chart["type"] == "application"
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"], "appVersion is the package version"


def test_docs_set_only_existing_values() -> None:
    """Every `--set key=...` in docs/deployment.md names a key of values.yaml."""
    docs = (ROOT / "docs" / "deployment.md").read_text()
    keys = re.findall(r"--set(?:-string|-file)?[ =]([A-Za-z][\w.]*)=", docs)
    assert keys, "docs/deployment.md shows no --set"
    values = default_values()
    assert [k for k in keys if not lookup(values, k)[0]] == []
