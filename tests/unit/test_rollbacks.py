"""conductor_server.rollbacks.retried: what PostgreSQL rolled back for a deadlock or a
serialization conflict runs again, a bounded number of times; nothing else is repeated."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from conductor_server import rollbacks


class Flaky:
    """Fails with `error` the first `failures` calls, then answers its call count."""

    def __init__(self, error: Exception, failures: int) -> None:
        self.error = error
        self.failures = failures
        self.calls = 0

    async def __call__(self, value: str) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return f"{value}:{self.calls}"


@pytest.fixture(autouse=True)
def _no_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rollbacks, "FIRST_PAUSE", 0.0)


@pytest.mark.parametrize("error", [psycopg.errors.DeadlockDetected("deadlock detected"),
                                   psycopg.errors.SerializationFailure("could not serialize")])
def test_a_rolled_back_transaction_runs_again(error: Exception) -> None:
    run = Flaky(error, failures=rollbacks.TRIES - 1)
    assert asyncio.run(rollbacks.retried(run)("x")) == f"x:{rollbacks.TRIES}"
    assert run.calls == rollbacks.TRIES


def test_the_error_reaches_the_caller_once_every_try_was_rolled_back() -> None:
    run = Flaky(psycopg.errors.DeadlockDetected("deadlock detected"), failures=99)
    with pytest.raises(psycopg.errors.DeadlockDetected):
        asyncio.run(rollbacks.retried(run)("x"))
    assert run.calls == rollbacks.TRIES


@pytest.mark.parametrize("error", [psycopg.errors.UniqueViolation("duplicate key"),
                                   psycopg.OperationalError("connection lost"),
                                   ValueError("bad")])
def test_other_errors_are_not_repeated(error: Exception) -> None:
    run = Flaky(error, failures=1)
    with pytest.raises(type(error)):
        asyncio.run(rollbacks.retried(run)("x"))
    assert run.calls == 1
