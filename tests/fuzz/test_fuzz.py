"""The short fuzz profile (runs with the normal test suite; `python -m bench.fuzz` runs the
long one and prints counts by status code)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings

from tests.fuzz.harness import Fuzzer
from tests.fuzz.strategies import client_requests, registers, worker_messages

pytestmark = pytest.mark.fuzz

#: examples per test in the short profile (CONDUCTOR_FUZZ_EXAMPLES overrides)
EXAMPLES = int(os.environ.get("CONDUCTOR_FUZZ_EXAMPLES", "150"))
PROFILE = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


@pytest.fixture
def fuzzer(start_coordinator, database_url):
    coordinator = start_coordinator(register_timeout=5.0, lease_timeout=3600.0)
    found = Fuzzer(coordinator.coordinator.address, database_url)
    yield found
    print(dict(found.summary()))
    found.close()


def test_client_rpcs_are_refused_cleanly(fuzzer):
    @PROFILE
    @given(client_requests())
    def run(case):
        fuzzer.client(*case)

    run()
    assert sum(fuzzer.counts.values()) >= EXAMPLES


def test_registrations_are_all_or_nothing(fuzzer):
    @PROFILE
    @given(registers())
    def run(register):
        fuzzer.register(register)

    run()
    assert sum(n for (kind, _), n in fuzzer.counts.items() if kind == "Register") >= EXAMPLES


def test_worker_messages_never_close_a_stream(fuzzer):
    @PROFILE
    @given(worker_messages())
    def run(message):
        fuzzer.worker(message)

    run()
    fuzzer.drain_unexpected()
    assert any(kind.startswith("worker:") for kind, _ in fuzzer.counts)
