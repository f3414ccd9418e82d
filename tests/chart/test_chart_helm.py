"""Checks of charts/conductor that run helm: lint, rendering with default and full values,
the rendered manifests against the Kubernetes schemas (kubernetes-validate, offline), and the
chart's own failures. Skipped when helm is not installed."""

from __future__ import annotations

from typing import Any

import pytest

from conductor_server.settings import Settings, from_environment
from tests.chart.chart_lib import (
    CI_VALUES,
    default_values,
    find,
    helm,
    helm_binary,
    helm_template,
    render,
)

pytestmark = pytest.mark.skipif(helm_binary() is None, reason="helm not on PATH")

DEFAULT = ("-f", str(CI_VALUES / "default-values.yaml"))
FULL = ("-f", str(CI_VALUES / "full-values.yaml"))
DB = ("--set", "database.url=postgresql://u:p@db:5432/conductor")
WORKER = ("--set", "worker.enabled=true", "--set", "worker.module=acme.tasks")

# Custom resources have no schema in kubernetes-validate.
CRD_GROUPS = ("monitoring.coreos.com/",)
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schemas.
KUBERNETES_VERSIONS = ("1.27.0", None)

Manifest = dict[str, Any]


def containers(deployment: Manifest) -> list[Manifest]:
    return deployment["spec"]["template"]["spec"]["containers"]  # type: ignore[no-any-return]


def env(container: Manifest) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@pytest.mark.parametrize("values", [DEFAULT, FULL], ids=["default", "full"])
def test_lint(values: tuple[str, ...]) -> None:
    helm("lint", "--strict", str(CI_VALUES.parent), *values)


@pytest.mark.parametrize("values", [DEFAULT, FULL], ids=["default", "full"])
def test_rendered_manifests_validate(values: tuple[str, ...]) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    latest = kubernetes_validate.latest_version()
    manifests = render(*values)
    assert manifests
    for manifest in manifests:
        if manifest["apiVersion"].startswith(CRD_GROUPS):
            assert manifest["kind"] == "ServiceMonitor" and manifest["spec"]["endpoints"]
            continue
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(manifest, version or latest, strict=True)


def test_default_render() -> None:
    manifests = render(*DEFAULT)
    kinds = sorted(m["kind"] for m in manifests)
    assert kinds == ["Deployment", "PodDisruptionBudget", "Secret", "Service", "ServiceAccount"]
    deployment = find(manifests, "Deployment", "-coordinator")
    assert deployment["spec"]["replicas"] >= 2
    (container,) = containers(deployment)
    values = default_values()["coordinator"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"] == {"port": values["port"]}, probe
    assert container["resources"]["requests"]
    args = container["args"]
    assert args[:2] == ["server", "--host"]
    assert args[args.index("--port") + 1] == str(values["port"])
    assert args[args.index("--metrics-port") + 1] == str(values["metricsPort"])
    variables = env(container)
    assert variables["CONDUCTOR_DATABASE_URL"]["secretKeyRef"]["key"] == "database-url"
    assert variables["CONDUCTOR_LOG_FORMAT"] == "json"
    assert "CONDUCTOR_AUTH_TOKEN" not in variables
    assert not [v for v in variables if "RETENTION" in v or "REDACT" in v]  # the defaults
    pdb = find(manifests, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    service = find(manifests, "Service", "-coordinator")
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {
        "grpc": values["port"], "metrics": values["metricsPort"]
    }
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_retention_values_reach_the_coordinator() -> None:
    manifests = render(*DEFAULT, "--set", "coordinator.retention.succeeded=2d",
                       "--set", "coordinator.retention.failed=90d",
                       "--set", "coordinator.retention.redactAfter=12h",
                       "--set", "coordinator.retention.events=30d",
                       "--set", "coordinator.retention.interval=300")
    (container,) = containers(find(manifests, "Deployment", "-coordinator"))
    variables = {k: v for k, v in env(container).items() if isinstance(v, str)}
    assert {k: v for k, v in variables.items() if "RETENTION" in k or "REDACT" in k
            or "MAINTENANCE" in k} == {
        "CONDUCTOR_RETENTION_SUCCEEDED": "2d", "CONDUCTOR_RETENTION_FAILED": "90d",
        "CONDUCTOR_REDACT_AFTER": "12h", "CONDUCTOR_MAINTENANCE_INTERVAL": "300",
        "CONDUCTOR_RETENTION_EVENTS": "30d"}
    # what the coordinator makes of them
    settings = from_environment(variables)
    assert (settings.retention_succeeded, settings.retention_failed, settings.redact_after,
            settings.maintenance_interval) == (2 * 86400, 90 * 86400, 12 * 3600, 300)
    assert settings.retention_cancelled == Settings().retention_cancelled
    assert settings.retention_events == 30 * 86400


def test_full_render() -> None:
    manifests = render(*FULL)
    coordinator = find(manifests, "Deployment", "-coordinator")
    (container,) = containers(coordinator)
    # kubelet's gRPC probes cannot speak TLS
    assert all("tcpSocket" in container[p] for p in ("readinessProbe", "livenessProbe"))
    args = container["args"]
    for flag in ("--tls-cert", "--tls-key", "--tls-client-ca"):
        assert args[args.index(flag) + 1].startswith("/etc/conductor/tls/")
    variables = env(container)
    assert variables["CONDUCTOR_DATABASE_URL"]["secretKeyRef"] == {
        "name": "conductor-db", "key": "uri"
    }
    assert variables["CONDUCTOR_AUTH_TOKEN"]["secretKeyRef"] == {
        "name": "conductor-auth", "key": "token"
    }
    assert not [m for m in manifests if m["kind"] == "Secret"], "existing Secrets only"

    worker = find(manifests, "Deployment", "-worker")
    assert "replicas" not in worker["spec"], "the HPA owns the replica count"
    (wcontainer,) = containers(worker)
    assert wcontainer["image"] == "registry.example.com/acme/tasks:2024.06.1"
    wargs = wcontainer["args"]
    assert wargs[:2] == ["worker", "acme.tasks"]
    assert wargs[wargs.index("--server") + 1] == "rel-conductor-coordinator:50051"
    assert env(wcontainer)["CONDUCTOR_SERVER"] == "rel-conductor-coordinator:50051"
    assert "--tls-ca" in wargs
    assert wcontainer["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}

    hpa = find(manifests, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"

    # every ServiceMonitor selects a Service that has its endpoint ports
    services = [m for m in manifests if m["kind"] == "Service"]
    monitors = [m for m in manifests if m["kind"] == "ServiceMonitor"]
    assert len(monitors) == 2
    for monitor in monitors:
        selector = monitor["spec"]["selector"]["matchLabels"]
        (service,) = [s for s in services if selector.items() <= s["metadata"]["labels"].items()]
        ports = {p["name"] for p in service["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports
        assert monitor["metadata"]["labels"]["release"] == "prometheus"
    worker_metrics = find(manifests, "Service", "-worker-metrics")
    assert worker_metrics["spec"]["clusterIP"] == "None"


def test_ui_render() -> None:
    """The dashboard: a client of the coordinator Service with the workers' TLS and token,
    its login token from a mounted Secret, probes on /healthz, Service and Ingress."""
    manifests = render(*FULL)
    ui = find(manifests, "Deployment", "-ui")
    assert ui["spec"]["replicas"] == 2
    (container,) = containers(ui)
    args = container["args"]
    assert args[:3] == ["ui", "--server", "rel-conductor-coordinator:50051"]
    assert args[args.index("--host") + 1] == "0.0.0.0"
    assert args[args.index("--login-token-file") + 1] == "/etc/conductor/ui/login-token"
    assert args[args.index("--tls-ca") + 1] == "/etc/conductor/tls/ca.crt" and "--tls-cert" in args
    assert env(container)["CONDUCTOR_AUTH_TOKEN"]["secretKeyRef"]["name"] == "conductor-auth"
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    volumes = {v["name"]: v for v in ui["spec"]["template"]["spec"]["volumes"]}
    assert volumes["login-token"]["secret"] == {
        "secretName": "conductor-ui", "items": [{"key": "token", "path": "login-token"}]}
    assert volumes["tls"]["secret"]["secretName"] == "conductor-worker-tls"
    service = find(manifests, "Service", "-ui")
    pod_labels = ui["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    ingress = find(manifests, "Ingress", "-ui")
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "conductor.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"] == {
        "name": service["metadata"]["name"], "port": {"name": "http"}}
    assert ingress["spec"]["tls"] == [{"hosts": ["conductor.example.com"],
                                       "secretName": "conductor-ui-tls"}]


def test_ui_login_token_goes_to_the_chart_secret() -> None:
    manifests = render(*DB, "--set", "ui.enabled=true", "--set", "ui.loginToken=" + "t" * 20)
    secret = find(manifests, "Secret")
    assert set(secret["data"]) == {"database-url", "ui-login-token"}
    ui = find(manifests, "Deployment", "-ui")
    volumes = {v["name"]: v for v in ui["spec"]["template"]["spec"]["volumes"]}
    assert volumes["login-token"]["secret"]["items"] == [
        {"key": "ui-login-token", "path": "login-token"}]
    assert not [m for m in render(*DB) if m["metadata"]["name"].endswith("-ui")]  # off by default


def grace_and_drain(manifests: list[Manifest]) -> tuple[int, float]:
    worker = find(manifests, "Deployment", "-worker")
    grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    (container,) = containers(worker)
    args = container["args"]
    return grace, float(args[args.index("--drain-timeout") + 1])


def test_worker_grace_period_exceeds_the_drain_timeout() -> None:
    grace, drain = grace_and_drain(render(*FULL))
    assert (grace, drain) == (150, 120)
    grace, drain = grace_and_drain(render(*DB, *WORKER, "--set", "worker.drainTimeout=300"))
    assert grace == drain + 30


@pytest.mark.parametrize("grace", [30, 60, 74])
def test_grace_period_not_above_the_drain_timeout_fails(grace: int) -> None:
    result = helm_template(
        *DB, *WORKER, "--set", "worker.drainTimeout=60",
        "--set", f"worker.terminationGracePeriodSeconds={grace}", check=False,
    )
    assert result.returncode != 0
    assert "must be at least worker.drainTimeout + 15" in result.stderr


def test_missing_database_fails() -> None:
    result = helm_template(check=False)
    assert result.returncode != 0
    assert "database.url" in result.stderr and "database.existingSecret" in result.stderr


def test_both_database_settings_fail() -> None:
    result = helm_template(*DB, "--set", "database.existingSecret=db", check=False)
    assert result.returncode != 0
    assert "only one of database.url and database.existingSecret" in result.stderr


def test_existing_database_secret() -> None:
    manifests = render("--set", "database.existingSecret=db")
    (container,) = containers(find(manifests, "Deployment", "-coordinator"))
    assert env(container)["CONDUCTOR_DATABASE_URL"]["secretKeyRef"] == {"name": "db", "key": "url"}
    assert not [m for m in manifests if m["kind"] == "Secret"]


def test_chart_secret_holds_url_and_token() -> None:
    import base64

    manifests = render(*DB, "--set", "auth.token=s3cret", *WORKER)
    secret = find(manifests, "Secret")
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded == {"database-url": "postgresql://u:p@db:5432/conductor", "auth-token": "s3cret"}
    for suffix in ("-coordinator", "-worker"):
        (container,) = containers(find(manifests, "Deployment", suffix))
        ref = env(container)["CONDUCTOR_AUTH_TOKEN"]["secretKeyRef"]
        assert ref == {"name": secret["metadata"]["name"], "key": "auth-token"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--set", "worker.enabled=true"), "module"),
        (("--set", "coordinator.replicas=1"), "replicas"),
        (("--set", "coordinator.replica=3"), "replica"),
        (("--set", "tls.enabled=true"), "secretName"),
        (("--set", "coordinator.pdb.minAvailable=2"), "minAvailable"),
        (("--set", "coordinator.metricsPort=50051"), "must differ"),
        ((*WORKER, "--set", "worker.autoscaling.enabled=true",
          "--set", "worker.autoscaling.minReplicas=5",
          "--set", "worker.autoscaling.maxReplicas=2"), "minReplicas"),
        ((*WORKER, "--set", "worker.autoscaling.enabled=true",
          "--set", "worker.resources.requests=null"), "requests.cpu"),
        (("--set", "auth.token=t", "--set", "auth.existingSecret=s"), "only one of auth.token"),
        (("--set", "ui.enabled=true"), "ui.loginToken or ui.existingSecret"),
        (("--set", "ui.enabled=true", "--set", "ui.existingSecret=s", "--set",
          "ui.ingress.enabled=true"), "/ui/ingress/host"),
    ],
    ids=["no-module", "one-coordinator", "unknown-key", "tls-no-secret", "pdb-blocks-drains",
         "same-ports", "hpa-min-above-max", "hpa-no-cpu-request", "two-tokens",
         "ui-without-login-token", "ui-ingress-without-host"],
)
def test_invalid_settings_fail(args: tuple[str, ...], message: str) -> None:
    result = helm_template(*DB, *args, check=False)
    assert result.returncode != 0, result.stdout[:500]
    assert message in result.stderr


def test_notes_render() -> None:
    result = helm(
        "install", "rel", str(CI_VALUES.parent), "--dry-run=client", "--namespace", "tasks",
        *FULL, check=False,
    )
    if result.returncode != 0 and "dry-run" in result.stderr:
        pytest.skip("this helm has no --dry-run=client")
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "rel-conductor-coordinator.tasks.svc:50051" in notes
    assert "Kubernetes waits 150s" in notes


VARIANTS = {
    "no-pdb-no-serviceaccount": (
        *DB, "--set", "coordinator.pdb.enabled=false", "--set", "serviceAccount.create=false",
    ),
    "pdb-percentage": (*DB, "--set", "coordinator.pdb.minAvailable=50%"),
    "worker-plain": (
        *DB, *WORKER, "--set", "auth.token=t", "--set", "worker.livenessProbe.enabled=false",
    ),
    "tls-server-only": (
        *DB, *WORKER, "--set", "tls.enabled=true", "--set", "tls.secretName=coordinator-tls",
    ),
    "monitor-without-workers": (*DB, "--set", "monitoring.serviceMonitor.enabled=true"),
    "long-names": (
        *DB, *WORKER, "--set", "fullnameOverride=" + "x" * 70,
        "--set", "monitoring.serviceMonitor.enabled=true",
    ),
}


@pytest.mark.parametrize("args", VARIANTS.values(), ids=VARIANTS.keys())
def test_variants_render_and_validate(args: tuple[str, ...]) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    latest = kubernetes_validate.latest_version()
    manifests = render(*args)
    for manifest in manifests:
        name = manifest["metadata"]["name"]
        assert len(name) <= 63 and name[0].isalpha(), f"{manifest['kind']} {name}: not a DNS label"
        if not manifest["apiVersion"].startswith(CRD_GROUPS):
            kubernetes_validate.validate(manifest, latest, strict=True)
