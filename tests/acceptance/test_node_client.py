"""A client in another language: the Node.js example in examples/node, using @grpc/grpc-js
and the .proto files, against a real coordinator and worker."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

import pytest

from conductor_worker import Client
from tests.acceptance.certs import self_signed
from tests.conftest import ROOT

pytestmark = pytest.mark.acceptance

NODE_DIR = ROOT / "examples" / "node"
INVOKE_JS = NODE_DIR / "invoke.js"
NPM_TIMEOUT = 240
RUN_TIMEOUT = 90
NETWORK_ERRORS = ("ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT", "ECONNREFUSED", "ECONNRESET", "network")


def _installed() -> bool:
    """True after a complete install: npm writes node_modules/.package-lock.json last."""
    modules = NODE_DIR / "node_modules"
    packages = [modules / "@grpc" / name / "package.json" for name in ("grpc-js", "proto-loader")]
    return all(path.exists() for path in [modules / ".package-lock.json", *packages])


@pytest.fixture(scope="module")
def node() -> str:
    """Path of `node`, with the example's dependencies installed (npm ci) if they are missing."""
    found = shutil.which("node")
    if found is None:
        pytest.skip("node is not on PATH: the Node.js client example cannot run")
    if _installed():
        return found
    npm = shutil.which("npm")
    assert npm, "node is on PATH but npm is not: cannot install examples/node's dependencies"
    has_lock = (NODE_DIR / "package-lock.json").exists()
    command = [npm, "ci" if has_lock else "install", "--no-audit", "--no-fund"]
    try:
        out = subprocess.run(
            command,
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"`{' '.join(command[1:])}` in examples/node took more than {NPM_TIMEOUT}s: "
            "is the npm registry reachable from this machine?"
        )
    if out.returncode != 0:
        hint = (
            "the npm registry could not be reached; the Node client test needs it"
            if any(marker in out.stderr for marker in NETWORK_ERRORS)
            else "npm failed"
        )
        pytest.fail(
            f"`npm {' '.join(command[1:])}` in examples/node exited {out.returncode} ({hint}):\n"
            f"{out.stderr[-4000:]}"
        )
    assert _installed(), f"npm succeeded but @grpc packages are missing:\n{out.stdout}"
    return found


def _invoke(
    node: str, address: str, task: str, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run invoke.js; `env` adds to an environment without any CONDUCTOR_* variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CONDUCTOR_")}
    return subprocess.run(
        [node, str(INVOKE_JS), "--server", address, "--task", task, *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
        env={**clean, **(env or {})},
    )


def _printed(out: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1, f"expected one JSON line on stdout:\n{out.stdout}\n{out.stderr}"
    data: dict[str, Any] = json.loads(lines[0])
    assert set(data) == {"id", "task", "state", "attempt", "result", "error"}, data
    return data


def test_node_client_invokes_and_waits(node, address, spawn_worker):
    spawn_worker(address)
    out = _invoke(node, address, "noop", "--payload", '{"hello":"node"}', "--timeout", "30")
    assert out.returncode == 0, out.stderr
    printed = _printed(out)
    assert printed["task"] == "noop"
    assert printed["state"] == "succeeded"
    assert printed["result"] == {"hello": "node"}
    assert printed["error"] is None
    assert printed["attempt"] == 1

    with Client(address) as client:
        seen = client.get(printed["id"])
    assert seen.id == printed["id"]
    assert seen.task == "noop"
    assert seen.state == "succeeded"
    assert seen.payload == {"hello": "node"}
    assert seen.result == {"hello": "node"}


def test_node_client_reports_unknown_task(node, address):
    out = _invoke(node, address, "no-such-task", "--payload", "{}")
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "NOT_FOUND" in out.stderr
    assert "no-such-task" in out.stderr
    assert out.stdout == ""


def test_node_client_reports_failed_execution(node, address, spawn_worker):
    spawn_worker(address)
    out = _invoke(node, address, "always-fails", "--payload", '"x"', "--timeout", "30")
    assert out.returncode == 1, (out.stdout, out.stderr)
    printed = _printed(out)
    assert printed["state"] == "failed"
    assert printed["attempt"] == 2
    assert printed["result"] is None
    assert printed["error"]["type"] == "ValueError"
    assert "bad value 'x'" in printed["error"]["message"]


def test_node_client_usage_error(node):
    out = subprocess.run(
        [node, str(INVOKE_JS), "--payload", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert out.returncode == 2
    assert "--task is required" in out.stderr


def test_node_client_server_defaults(node, address, spawn_worker):
    """Without --server: $CONDUCTOR_SERVER, else 127.0.0.1:50051 (where `conductor dev` is)."""
    spawn_worker(address)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CONDUCTOR_")}
    out = subprocess.run(
        [node, str(INVOKE_JS), "--task", "noop", "--payload", "7", "--timeout", "30"],
        cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
        env={**clean, "CONDUCTOR_SERVER": address},
    )
    assert out.returncode == 0, out.stderr
    assert _printed(out)["result"] == 7
    source = INVOKE_JS.read_text()
    assert "const DEFAULT_SERVER = '127.0.0.1:50051';" in source


TOKEN = "node-token-value"


def test_node_client_with_a_bearer_token(node, start_coordinator, spawn_worker, tmp_path):
    address = start_coordinator(auth_token=TOKEN).coordinator.address
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    spawn_worker(address, "tests.acceptance.tasks", "--auth-token-file", str(token_file))
    refused = _invoke(node, address, "noop", "--payload", "1")
    assert refused.returncode == 2, (refused.stdout, refused.stderr)
    assert "UNAUTHENTICATED" in refused.stderr
    wrong = _invoke(node, address, "noop", "--payload", "1", "--token", "wrong")
    assert wrong.returncode == 2 and "UNAUTHENTICATED" in wrong.stderr
    out = _invoke(node, address, "noop", "--payload", "2", "--token", TOKEN)
    assert out.returncode == 0, out.stderr
    assert _printed(out)["result"] == 2
    from_env = _invoke(node, address, "noop", "--payload", "3",
                       env={"CONDUCTOR_AUTH_TOKEN": TOKEN})
    assert from_env.returncode == 0, from_env.stderr
    assert _printed(from_env)["result"] == 3
    assert TOKEN not in out.stderr + from_env.stderr


def test_node_client_over_tls(node, start_coordinator, spawn_worker, tmp_path):
    cert, key = self_signed(tmp_path)
    coordinator = start_coordinator(tls_cert=cert, tls_key=key)
    address = f"localhost:{coordinator.coordinator.port}"
    spawn_worker(address, "tests.acceptance.tasks", "--tls-ca", str(cert))
    out = _invoke(node, address, "noop", "--payload", '"over tls"', "--tls-ca", str(cert))
    assert out.returncode == 0, out.stderr
    assert _printed(out)["result"] == "over tls"
    plaintext = _invoke(node, address, "noop", "--payload", "1", "--timeout", "5")
    assert plaintext.returncode == 2, (plaintext.stdout, plaintext.stderr)
    assert "gRPC error: UNAVAILABLE" in plaintext.stderr
    unreadable = _invoke(node, address, "noop", "--tls-ca", str(tmp_path / "missing.pem"))
    assert unreadable.returncode == 2
    assert "--tls-ca: cannot read" in unreadable.stderr
