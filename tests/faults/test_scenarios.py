"""The short version of every fault scenario (the long one is `python -m bench.faults`).

Each runs real coordinator and worker processes against a PostgreSQL server of the suite's
own, with steady load of five-step tasks, and asserts: no execution lost, none stuck once the
load drains, no step function run again after its step was recorded, no stale write accepted
and, for faults that must cost nothing (a cut shorter than the lease timeout, a graceful
rolling restart), no attempt burned. See docs/reliability.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults import scenarios
from tests.faults.cluster import PostgresServer

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with scenarios.postgres() as server:
        yield server


@pytest.mark.parametrize("name", [s.name for s in scenarios.SCENARIOS])
def test_fault(name: str, pg: PostgresServer, tmp_path: Path) -> None:
    outcome = scenarios.run_scenario(scenarios.BY_NAME[name], scenarios.CI, pg, tmp_path)
    assert outcome.passed, outcome.report()
