"""@task's flow-control options, Worker(queues=...), `--queues` and RateLimited refuse bad
values with a message naming the option."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from conductor.v1 import worker_pb2
from conductor_worker import RateLimited, TaskDefinitionError, Worker, flow, task
from conductor_worker.runtime import task_definition
from tests.conftest import ROOT

from . import sample_tasks


def _noop(event: Any, ctx: Any) -> None:
    return None


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"rate_limit": "100 per second"}, "rate_limit"),
        ({"rate_limit": "0/s"}, "rate_limit"),
        ({"rate_limit": 100}, "rate_limit"),
        ({"rate_limit_name": "api"}, "rate_limit_name"),
        ({"rate_limit": "1/s", "rate_limit_name": "a,b"}, "rate_limit_name"),
        ({"key": ""}, "key"),
        ({"key": "a..b"}, "key"),
        ({"key": "customer id"}, "key"),
        ({"queue": ""}, "queue"),
        ({"queue": "a,b"}, "queue"),
        ({"key": "k", "key_concurrency": 0}, "key_concurrency"),
        ({"key": "k", "key_concurrency": -1}, "key_concurrency"),
        ({"key": "k", "key_concurrency": 1.5}, "key_concurrency"),
        ({"key": "k", "key_concurrency": True}, "key_concurrency"),
        ({"key": "k", "key_concurrency": 1_000_001}, "key_concurrency"),
        ({"key": "k", "concurrency": 2, "key_concurrency": 3}, "key_concurrency"),
    ],
)
def test_bad_flow_options_name_the_option(options, option):
    with pytest.raises(TaskDefinitionError, match=rf"^task 'bad': {option}: "):
        task(name="bad", **options)(_noop)


def test_the_registration_of_flow_options():
    keyed = task(name="keyed", key="customer.id", concurrency=2, rate_limit="10/m",
                 rate_limit_name="crm", queue="emails")(_noop)
    d = task_definition(keyed)
    assert (d.key, d.key_concurrency, d.concurrency) == ("customer.id", 2, 0)
    assert (d.rate_limit, d.rate_limit_name, d.queue) == ("10/m", "crm", "emails")
    plain = task_definition(task(name="plain", concurrency=3)(_noop))
    assert (plain.key, plain.key_concurrency, plain.concurrency, plain.queue) == ("", 0, 3, "")


def test_a_global_cap_and_a_cap_per_key_together():
    both = task_definition(task(name="both", key="k", concurrency=3, key_concurrency=1)(_noop))
    assert (both.key, both.key_concurrency, both.concurrency) == ("k", 1, 3)
    per_key_only = task_definition(task(name="per-key", key="k", key_concurrency=2)(_noop))
    assert (per_key_only.key_concurrency, per_key_only.concurrency) == (2, 0)
    # keys from the invoke's concurrency_key only: no payload field
    invoked_keys = task_definition(task(name="by-invoke", concurrency=5,
                                        key_concurrency=5)(_noop))
    assert (invoked_keys.key, invoked_keys.key_concurrency, invoked_keys.concurrency) == (
        "", 5, 5)


@pytest.mark.parametrize("text", ["1/s", "100/s", "10/m", "5/10s", "1000/h", "50000/d",
                                  " 7 / 2 m "])
def test_good_rate_limits(text):
    assert flow.rate_problem(text) is None


def test_worker_queues_are_checked_before_anything_starts():
    with pytest.raises(TaskDefinitionError, match=r"^queues: "):
        Worker([sample_tasks.plain], "127.0.0.1:1", queues=[])
    with pytest.raises(TaskDefinitionError, match=r"^queues: 'a b' is not a queue name"):
        Worker([sample_tasks.plain], "127.0.0.1:1", queues=["a b"])
    worker = Worker([sample_tasks.plain], "127.0.0.1:1", queues="emails")
    assert worker.queues == ("emails",)
    assert isinstance(worker._register_message().register, worker_pb2.Register)
    assert list(worker._register_message().register.queues) == ["emails"]


def test_the_worker_command_refuses_bad_queues():
    result = subprocess.run(
        [sys.executable, "-m", "conductor_worker", "worker", "tests.acceptance.flow_limit_tasks",
         "--queues", "emails,,reports"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "argument --queues: '' is not a queue name" in result.stderr


@pytest.mark.parametrize("bad", [-1, float("nan"), 86401, "1"])
def test_rate_limited_wants_a_sane_retry_after(bad):
    with pytest.raises(ValueError, match="retry_after"):
        RateLimited(retry_after=bad)
    assert RateLimited(retry_after=2).retry_after == 2.0
