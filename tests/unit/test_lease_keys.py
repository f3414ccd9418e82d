"""conductor_worker.runtime: the worker's bookkeeping is keyed by lease (execution id +
token), so an old run of an execution and its re-lease are never confused."""

from __future__ import annotations

import asyncio
from typing import Any

from conductor.v1 import worker_pb2
from conductor_worker.context import RunKey, RunSpec
from conductor_worker.runtime import Worker

from . import sample_tasks

TASK = "unit-sample-plain"
OLD: RunKey = ("7", "token-old")
NEW: RunKey = ("7", "token-new")


class FakePool:
    """Records what the worker asks of a task's pool."""

    def __init__(self) -> None:
        self.submitted: list[RunSpec] = []
        self.interrupts: list[tuple[RunKey, str]] = []
        self.acks: list[tuple[RunKey, str, str | None, str]] = []

    def submit(self, spec: RunSpec) -> None:
        self.submitted.append(spec)

    def interrupt(self, key: RunKey, reason: str, run_at: float | None = None) -> None:
        self.interrupts.append((key, reason))

    def step_acks(self, acks: list[tuple[RunKey, str, str | None, str]]) -> None:
        self.acks.extend(acks)


def leases(*keys: RunKey) -> worker_pb2.CoordinatorMessage:
    return worker_pb2.CoordinatorMessage(leases=worker_pb2.Leases(items=[
        worker_pb2.Lease(execution_id=eid, lease_token=token, task=TASK, attempt=1,
                         max_attempts=3, payload_json="{}")
        for eid, token in keys
    ]))


def step_ack(key: RunKey, name: str, status: Any) -> worker_pb2.CoordinatorMessage:
    return worker_pb2.CoordinatorMessage(step_acks=worker_pb2.StepAcks(items=[
        worker_pb2.StepAck(execution_id=key[0], lease_token=key[1], name=name, status=status,
                           result_json="1" if status == worker_pb2.WRITE_STATUS_OK else "")
    ]))


def make() -> tuple[Worker, FakePool]:
    worker = Worker([sample_tasks.plain], "127.0.0.1:1")
    pool = FakePool()
    worker.pools = {TASK: pool}  # type: ignore[dict-item]
    worker._outbox = asyncio.Queue()
    return worker, pool


def heartbeat_keys(worker: Worker) -> set[RunKey]:
    register = worker._register_message().register
    return {(ref.execution_id, ref.lease_token) for ref in register.held_leases}


def test_a_re_lease_abandons_the_old_run_and_keeps_the_new_one() -> None:
    async def scenario() -> None:
        worker, pool = make()
        worker._on_coordinator_message(leases(OLD))
        worker._on_pool_message(TASK, ("step", OLD, "a", "1"))  # the old run waits on a save
        worker._on_coordinator_message(leases(NEW))
        assert [s.key for s in pool.submitted] == [OLD, NEW]
        assert pool.interrupts == [(OLD, "lost")]  # its waits are answered, it stops
        assert worker.held[OLD].abandoned and not worker.held[NEW].abandoned
        assert heartbeat_keys(worker) == {NEW}

        # The old run's stale answer concerns the old run only.
        worker._on_coordinator_message(step_ack(OLD, "a", worker_pb2.WRITE_STATUS_STALE_LEASE))
        assert pool.acks == [(OLD, "a", None, "")]
        assert not worker.held[NEW].abandoned

        # The new run's save and its answer are its own.
        worker._on_pool_message(TASK, ("step", NEW, "a", "2"))
        assert (NEW, "a") in worker.pending_steps and (OLD, "a") not in worker.pending_steps
        worker._on_coordinator_message(step_ack(NEW, "a", worker_pb2.WRITE_STATUS_OK))
        assert pool.acks[-1] == (NEW, "a", "1", "")

        # The old run ends; the new one is still held and still the one a cancel reaches.
        worker._on_pool_message(TASK, ("abandoned", OLD))
        assert set(worker.held) == {NEW}
        worker._on_coordinator_message(worker_pb2.CoordinatorMessage(
            cancel_requests=worker_pb2.CancelRequests(execution_ids=["7"])))
        assert pool.interrupts[-1] == (NEW, "cancelled")

        # Its outcome is acknowledged by its own token only.
        worker._on_pool_message(TASK, ("done", NEW, "3"))
        ack = worker_pb2.CoordinatorMessage(outcome_acks=worker_pb2.OutcomeAcks(items=[
            worker_pb2.OutcomeAck(execution_id="7", lease_token=OLD[1],
                                  status=worker_pb2.WRITE_STATUS_STALE_LEASE)]))
        worker._on_coordinator_message(ack)
        assert NEW in worker.held
        ack.outcome_acks.items[0].lease_token = NEW[1]
        ack.outcome_acks.items[0].status = worker_pb2.WRITE_STATUS_OK
        worker._on_coordinator_message(ack)
        assert worker.held == {} and worker.tokens == {}

    asyncio.run(scenario())


def test_leases_the_coordinator_says_are_gone_are_abandoned() -> None:
    async def scenario() -> None:
        worker, pool = make()
        worker._on_coordinator_message(leases(OLD, ("8", "t8")))
        lost = worker_pb2.LeaseRef(execution_id=OLD[0], lease_token=OLD[1])
        worker._on_coordinator_message(worker_pb2.CoordinatorMessage(
            heartbeat_ack=worker_pb2.HeartbeatAck(lost_leases=[lost])))
        assert pool.interrupts == [(OLD, "lost")]
        assert heartbeat_keys(worker) == {("8", "t8")}

    asyncio.run(scenario())


def test_a_save_for_a_lease_no_longer_held_is_answered_at_once() -> None:
    async def scenario() -> None:
        worker, pool = make()
        worker._on_pool_message(TASK, ("step", ("9", "gone"), "a", "1"))
        assert pool.acks == [(("9", "gone"), "a", None, "")]  # never a wait without end

    asyncio.run(scenario())


def test_a_step_over_the_execution_total_is_refused_before_sending() -> None:
    from conductor_worker.runtime import _Limits

    async def scenario() -> None:
        worker, pool = make()
        worker._limits = _Limits(step_result_bytes=1000, steps_bytes=100)
        message = leases(OLD)
        message.leases.items[0].steps["earlier"] = "x" * 60  # recorded before: 60 bytes
        worker._on_coordinator_message(message)
        worker._on_pool_message(TASK, ("step", OLD, "a", "y" * 30))  # 90: fits
        assert (OLD, "a") in worker.pending_steps and pool.acks == []
        worker._on_pool_message(TASK, ("step", OLD, "b", "z" * 20))  # 110: over
        assert (OLD, "b") not in worker.pending_steps
        assert pool.acks == [(OLD, "b", None, "steps: the execution's step results would"
                              " total 110 bytes; the limit is 100 bytes")]

    asyncio.run(scenario())
