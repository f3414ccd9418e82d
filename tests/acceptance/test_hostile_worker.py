"""A real worker whose handler raises an error text PostgreSQL cannot store as it is (a NUL):
the attempt is recorded with the text sanitised, and the worker's stream stays up (it used
to reconnect 10 times in 25 s)."""

from __future__ import annotations

import pytest

from conductor_worker import Client

pytestmark = pytest.mark.acceptance


def test_handler_error_with_nul_is_stored_and_the_stream_stays_up(address, spawn_worker):
    worker = spawn_worker(address, "tests.acceptance.hostile_tasks")
    with Client(address) as client:
        failed = [client.wait(client.invoke("nul-error", n), timeout=60) for n in range(5)]
        ok = client.wait(client.invoke("fine", "after"), timeout=60)
        workers = client.workers()
    assert all(e.state == "failed" for e in failed)
    assert {e.error.type for e in failed} == {"ValueError"}
    assert {e.error.message for e in failed} == {"bad header: b\\x00\x01"}
    assert ok.state == "succeeded" and ok.result == "after"
    assert len(workers) == 1
    assert worker.output().count("connected to") == 1, worker.output()
