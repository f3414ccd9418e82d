"""Operations: Prometheus metrics (coordinator and worker), health during a graceful stop,
bearer tokens, TLS, and the inspection CLI."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conductor_worker import Client
from conductor_worker.errors import Unauthenticated
from tests.acceptance.certs import self_signed
from tests.conftest import ROOT, wait_for

pytestmark = pytest.mark.acceptance
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def samples(text: str) -> dict[str, float]:
    """{'name{labels}': value} of a Prometheus text exposition."""
    found = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match:
            found[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return found


def value(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for key, number in samples(text).items():
        metric, _, rest = key.partition("{")
        got = ",".join(sorted(p for p in rest.rstrip("}").split(",") if p))
        if metric == name and got == want:
            return number
    return 0.0


def promtool_check(text: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        # CI installs it (.ci/run); elsewhere, say what is missing instead of failing
        assert not os.environ.get("CI"), "promtool is missing: .ci/run installs it"
        pytest.skip("promtool not on PATH (Debian package prometheus): metrics format unchecked")
    out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_metrics_move_with_success_failure_and_retry(start_coordinator, spawn_worker, tmp_path):
    coordinator = start_coordinator(metrics_port=0)
    address, port = coordinator.coordinator.address, coordinator.coordinator.metrics_port
    worker = spawn_worker(address, "tests.acceptance.tasks", "--metrics-port", "0")
    worker_port = int(wait_for(lambda: re.search(r"metrics on port (\d+)", worker.output()),
                               what="the worker's metrics port").group(1))
    before = scrape(port)
    with Client(address) as client:
        ok = client.wait(client.invoke("noop", 1), timeout=60)
        failed = client.wait(client.invoke("always-fails", "x"), timeout=60)
        retried = client.wait(client.invoke("fail-after-two-steps",
                                            {"effects": str(tmp_path / "e.txt")}), timeout=60)
    assert (ok.state, failed.state, retried.state) == ("succeeded", "failed", "succeeded")
    coordinator.run(coordinator.coordinator.dispatcher.refresh_queue_gauges())
    after = scrape(port)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    finished = "conductor_executions_finished_total"
    assert delta(finished, task="noop", outcome="succeeded") == 1
    assert delta(finished, task="always-fails", outcome="retried") == 1
    assert delta(finished, task="always-fails", outcome="failed") == 1
    assert delta(finished, task="fail-after-two-steps", outcome="retried") == 1
    assert delta(finished, task="fail-after-two-steps", outcome="succeeded") == 1
    assert delta("conductor_executions_started_total", task="always-fails") == 2
    assert delta("conductor_steps_saved_total", task="fail-after-two-steps") == 2
    assert delta("conductor_dispatch_latency_seconds_count", task="noop") == 1
    assert delta("conductor_execution_run_seconds_count", task="fail-after-two-steps") == 2
    assert value(after, "conductor_workers_connected") == 1
    assert value(after, "conductor_queue_depth", task="noop") == 0
    assert delta("conductor_grpc_requests_total",
                 method="/conductor.v1.ConductorService/Invoke", code="OK") == 3
    assert "execution_id" not in after

    worker_text = scrape(worker_port)
    executions = "conductor_worker_executions_total"
    assert value(worker_text, executions, task="noop", outcome="succeeded") == 1
    assert value(worker_text, executions, task="always-fails", outcome="failed") == 2
    # recorded inside the pool processes, summed by the worker's endpoint
    assert value(worker_text, "conductor_worker_handler_seconds_count",
                 task="fail-after-two-steps") == 2
    assert value(worker_text, "conductor_worker_steps_total", task="fail-after-two-steps") == 2
    promtool_check(after)
    promtool_check(worker_text)


def test_health_goes_not_serving_during_graceful_stop(start_coordinator):
    coordinator = start_coordinator(shutdown_delay=2.0)
    address = coordinator.coordinator.address
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        check = lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=5).status  # noqa: E731
        assert check() == health_pb2.HealthCheckResponse.SERVING
        stopping = threading.Thread(target=coordinator.stop)
        stopping.start()
        wait_for(lambda: check() == health_pb2.HealthCheckResponse.NOT_SERVING,
                 what="NOT_SERVING")
        stopping.join(30)
    assert not stopping.is_alive()


TOKEN = "s3cret-token-value"


def test_bearer_token_for_clients_and_workers(start_coordinator, spawn_worker, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    coordinator = start_coordinator(auth_token=TOKEN)
    address = coordinator.coordinator.address
    for token in (None, "wrong"):
        with Client(address, token=token) as client, pytest.raises(Unauthenticated):
            client.list()
    refused = spawn_worker(address, "tests.acceptance.tasks", ready=False)
    assert refused.process.wait(60) == 1
    assert "refused this worker" in refused.output()
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    worker = spawn_worker(address, "tests.acceptance.tasks", "--auth-token-file", str(token_file))
    with Client(address, token=TOKEN) as client:
        assert client.wait(client.invoke("noop", "authorized"), timeout=60).result == "authorized"
    with grpc.insecure_channel(address) as channel:  # health stays open for probes
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest()).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    assert TOKEN not in caplog.text
    assert TOKEN not in worker.output() and TOKEN not in refused.output()


def test_tls_round_trip_with_self_signed_certificate(start_coordinator, spawn_worker, tmp_path):
    cert, key = self_signed(tmp_path)
    coordinator = start_coordinator(tls_cert=cert, tls_key=key)
    address = f"localhost:{coordinator.coordinator.port}"
    spawn_worker(address, "tests.acceptance.tasks", "--tls-ca", str(cert))
    with Client(address, tls_ca=cert) as client:
        assert client.wait(client.invoke("noop", "over tls"), timeout=60).result == "over tls"
    with Client(address, timeout=2) as plaintext, pytest.raises(grpc.RpcError):  # retried
        plaintext.list()


def test_inspection_cli(address, spawn_worker, tmp_path):
    spawn_worker(address)
    with Client(address) as client:
        done = client.wait(client.invoke("fail-after-two-steps",
                                         {"effects": str(tmp_path / "e.txt")}), timeout=60)
        client.invoke("ordered", {"effects": str(tmp_path / "o.txt"), "label": "x"},
                      delay=3600)

    def cli(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "conductor_worker", *args,
                              "--server", address], cwd=ROOT, capture_output=True, text=True,
                             timeout=60, check=False)
        assert out.returncode == 0, out.stderr
        return out.stdout

    listed = json.loads(cli("executions", "ls", "--task", "fail-after-two-steps", "--json"))
    assert [e["id"] for e in listed] == [done.id]
    table = cli("executions", "ls", "--state", "succeeded")
    assert "fail-after-two-steps" in table and "succeeded" in table
    shown = json.loads(cli("executions", "show", done.id, "--json"))
    assert [s["name"] for s in shown["steps"]] == ["one", "two"]
    assert shown["attempt"] == 2
    text = cli("executions", "show", done.id)
    assert "steps (2):" in text and "one = 1" in text
    workers = json.loads(cli("workers", "--json"))
    assert len(workers) == 1 and "noop" in workers[0]["tasks"]
    assert "noop" in cli("workers")
    queues = {q["task"]: q for q in json.loads(cli("queues", "--json"))}
    assert queues["ordered"]["waiting"] == 1 and queues["ordered"]["ready"] == 0
    assert "ordered" in cli("queues")

