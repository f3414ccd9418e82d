"""Issue 11: the validation helpers and the settings' flag checks (no sockets, no DB)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from conductor_server.models import InvalidArgument
from conductor_server.settings import MIB, Settings, from_environment
from conductor_server.validation import (
    MAX_JSON_DEPTH,
    check_payload,
    check_text,
    check_time,
    sanitize,
    shown,
)


def test_shown_cuts_long_values_and_says_how_long() -> None:
    assert shown("abc") == "'abc'"
    text = shown("x" * 1_000_000)
    assert len(text) < 120 and "1000000 characters" in text


def test_check_text_refuses_nul_and_length_naming_the_field() -> None:
    with pytest.raises(InvalidArgument, match=r"^options.queue: may not contain NUL"):
        check_text("a\x00b", "options.queue", 100)
    with pytest.raises(InvalidArgument, match=r"^task: at most 5 characters, got 6"):
        check_text("x" * 6, "task", 5)
    with pytest.raises(InvalidArgument, match=r"^register.worker_id: required"):
        check_text("", "register.worker_id", 5, required=True)
    assert check_text("fine", "task", 5) == "fine"


def test_sanitize_replaces_nul_and_cuts_to_the_byte_limit() -> None:
    assert sanitize("bad header: b\x00\x01", 100) == "bad header: b\\x00\x01"
    cut = sanitize("é" * 100, 11)  # 2 bytes each: never half a character
    assert cut == "é" * 5 + " [truncated]"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[" * 10_000 + "]" * 10_000, "nested deeper"),
        ("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), "nested deeper"),
        ('"\\ud800"', "lone surrogates"),
        ('{"k\\u0000": 1}', "NUL"),
        ("1e999999", "out of range"),
        ("-1e400", "out of range"),
        ("1" * 5000, "not valid JSON"),
    ],
)
def test_unstorable_json_is_refused(text: str, problem: str) -> None:
    with pytest.raises(InvalidArgument, match=problem):
        check_payload(text, "payload_json", 10 * MIB)


def test_json_at_the_depth_limit_and_valid_escapes_pass() -> None:
    deep = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert check_payload(deep, "payload_json", MIB) == deep
    assert check_payload('"\\ud83d\\ude42 \\u00e9"', "payload_json", MIB)  # a valid pair


@pytest.mark.parametrize(
    ("seconds", "nanos"), [(253402300800 + 86400, 0), (-62135596800 - 86400, 0), (0, -1),
                           (0, 10**9)])
def test_times_out_of_range_are_refused(seconds: int, nanos: int) -> None:
    with pytest.raises(InvalidArgument, match=r"^options.run_at:"):
        check_time(seconds, nanos, "options.run_at")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lease_timeout": 0}, "--lease-timeout: must be > 0"),
        ({"lease_timeout": -1}, "--lease-timeout: must be > 0"),
        ({"lease_timeout": math.nan}, "--lease-timeout: must be > 0"),
        ({"max_payload_bytes": -1}, "--max-payload-bytes: must be > 0"),
        ({"port": 99999}, "--port: must be a port 0..65535, got 99999"),
        ({"port": -1}, "--port: must be a port 0..65535, got -1"),
        ({"metrics_port": 70000}, "--metrics-port"),
        ({"register_timeout": 0}, "--register-timeout"),
        ({"max_message_bytes": 1000}, "--max-message-bytes"),
        ({"tls_client_ca": Path("/etc/hostname")}, "--tls-client-ca: needs --tls-cert"),
        ({"tls_cert": Path("/etc/hostname")}, "--tls-cert: TLS needs both"),
        ({"log_format": "xml"}, "--log-format"),
    ],
)
def test_bad_settings_are_refused_naming_the_flag(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace(".", r"\.")):
        Settings(**overrides)


def test_the_message_limit_follows_the_size_limits() -> None:
    assert Settings().message_limit == 32 * MIB
    assert Settings(max_payload_bytes=10 * MIB).message_limit == 41 * MIB
    assert Settings(max_message_bytes=2 * MIB).message_limit == 2 * MIB


def test_environment_and_flags_are_checked_together() -> None:
    env = {"CONDUCTOR_TLS_CLIENT_CA": "/etc/hostname"}
    with pytest.raises(ValueError, match="--tls-client-ca"):
        from_environment(env)
    settings = from_environment(env, tls_cert=Path("/etc/hostname"),
                                tls_key=Path("/etc/hostname"))
    assert settings.tls_client_ca == Path("/etc/hostname")
