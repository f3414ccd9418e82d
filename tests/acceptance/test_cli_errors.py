"""The real `conductor` command on bad arguments (issue 11, item 12): a one-line error naming
the flag, exit code 2 for usage and 1 for failures, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.acceptance

_SCRIPT = Path(sys.executable).parent / "conductor"
COMMAND = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "conductor_worker"]
NOWHERE = ["--server", "127.0.0.1:9"]  # nothing listens there; these fail before connecting


def run(*args: str | bytes, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDUCTOR_")}
    return subprocess.run([*COMMAND, *args], cwd=ROOT, env=env, capture_output=True,
                          timeout=timeout, check=False)


def one_line_error(result: subprocess.CompletedProcess[bytes], code: int, *words: str) -> str:
    err = result.stderr.decode(errors="replace").strip()
    assert result.returncode == code, (result.returncode, err)
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for word in words:
        assert word in err, err
    return err


@pytest.fixture
def pem(tmp_path: Path) -> str:
    path = tmp_path / "cert.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return str(path)


USAGE_CASES = {
    "payload-nested-10000-deep": (["invoke", "t", "--payload", "[" * 10_000 + "]" * 10_000,
                                   *NOWHERE], "--payload"),
    "priority-2**40": (["invoke", "t", "--priority", str(2**40), *NOWHERE], "--priority"),
    "run-at-before-year-1-in-utc": (["invoke", "t", "--run-at", "0001-01-01T00:00:00+14:00",
                                     *NOWHERE], "--run-at"),
    "missing-auth-token-file": (["invoke", "t", "--auth-token-file", "/nonexistent/token",
                                 *NOWHERE], "--auth-token-file"),
    "missing-tls-ca": (["invoke", "t", "--tls-ca", "/nonexistent/ca.pem", *NOWHERE],
                       "--tls-ca"),
    "log-level-nope": (["--log-level", "NOPE", "invoke", "t", *NOWHERE], "--log-level"),
    "wait-timeout-negative": (["invoke", "t", "--wait", "--timeout", "-1", *NOWHERE],
                              "--timeout"),
    "server-port-99999": (["server", "--port", "99999"], "--port"),
    "server-port-minus-1": (["server", "--port", "-1"], "--port"),
    "server-lease-timeout-0": (["server", "--lease-timeout", "0"], "--lease-timeout"),
    "server-lease-timeout-minus-1": (["server", "--lease-timeout", "-1"], "--lease-timeout"),
    "server-max-payload-minus-1": (["server", "--max-payload-bytes", "-1"],
                                   "--max-payload-bytes"),
    "server-bad-database-url": (["server", "--database-url", "not a url"], "--database-url"),
    "server-tls-client-ca-alone": (["server", "--tls-client-ca", "/etc/hostname"],
                                   "--tls-client-ca"),
}


@pytest.mark.parametrize("case", list(USAGE_CASES))
def test_bad_arguments_are_one_line_usage_errors(case: str) -> None:
    args, flag = USAGE_CASES[case]
    one_line_error(run(*args), 2, flag)


def test_tls_cert_without_key_is_a_usage_error(pem: str) -> None:
    one_line_error(run("invoke", "t", "--tls-ca", pem, "--tls-cert", pem, *NOWHERE), 2,
                   "--tls-key")


def test_non_utf8_argument_is_a_usage_error() -> None:
    one_line_error(run("invoke", b"t\xff\xfe", *NOWHERE), 2, "UTF-8")


def test_unreachable_coordinator_is_a_one_line_failure() -> None:
    one_line_error(run("get", "1", *NOWHERE), 1, "127.0.0.1:9")


def test_bad_host_is_a_one_line_usage_error(database_url: str) -> None:
    one_line_error(run("server", "--database-url", database_url, "--host", "999.1.1.1",
                       "--port", "0"), 2, "--host")


def test_unreachable_database_is_a_one_line_failure() -> None:
    """The pool waits up to 30 s for a first connection (logging a warning per attempt),
    then the command fails with one error line."""
    result = run("server", "--database-url", "postgresql://127.0.0.1:9/none", "--port", "0",
                 timeout=90)
    err = result.stderr.decode(errors="replace")
    assert result.returncode == 1 and "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("conductor ")]
    assert errors == ["conductor server: pool initialization incomplete after 30 sec"], err
