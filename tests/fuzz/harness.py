"""Sends hostile requests to a running coordinator and checks the promises of issue 11:
no INTERNAL/UNKNOWN for any request, no row written by a refused one, no stream closed for
another worker (nor for the sender, whatever it sent), and the server still serving."""

from __future__ import annotations

import queue
from collections import Counter
from typing import Any

import grpc
import psycopg

from conductor.v1 import client_pb2, client_pb2_grpc, worker_pb2, worker_pb2_grpc
from tests.fuzz.strategies import LEASE_ID, LEASE_TOKEN
from tests.integration.raw_worker import RawWorker, definition

#: never acceptable as an answer to anything
FORBIDDEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
#: what a refused request must not change (executions fired by cron schedules, which
#: accepted PutSchedules and Registers create, are left out: they appear on their own)
ROWS = (
    "SELECT count(*) FROM conductor_executions WHERE schedule IS NULL",
    "SELECT count(*) FROM conductor_schedules",
    "SELECT count(*) FROM conductor_tasks",
    "SELECT count(*) FROM conductor_workers",
    "SELECT count(*) FROM conductor_steps",
)
#: how many executions the fuzzed worker and the bystander hold leases of
LEASES = 40


class Fuzzer:
    """One coordinator under fuzz: a client channel, a fuzzed worker stream holding real
    leases, and a bystander worker whose stream must never notice anything."""

    def __init__(self, address: str, database_url: str) -> None:
        self.address = address
        self.db = psycopg.connect(database_url, autocommit=True)
        self.channel = grpc.insecure_channel(address)
        self.stub = client_pb2_grpc.ConductorServiceStub(self.channel)
        #: status code names by what was sent ("Invoke", "Register", "worker:outcomes", ...)
        self.counts: Counter[tuple[str, str]] = Counter()
        self.target = RawWorker(address, definition("fz", capacity=LEASES), worker_id="fz-1")
        self.bystander = RawWorker(address, definition("bys", capacity=1), worker_id="bys-1")
        # the task the client fuzz mostly names (its worker takes one execution, then idles)
        self.known = RawWorker(address, definition("known", capacity=1), worker_id="known-1")
        self.leases: list[tuple[str, str]] = []
        self._refill()
        ids = self.stub.InvokeBatch(
            client_pb2.InvokeBatchRequest(task="bys", payloads_json=["1"] * 1), timeout=10
        ).execution_ids
        lease = self.bystander.next("leases").leases.items[0]
        assert lease.execution_id == ids[0]
        self.bystander_lease = (lease.execution_id, lease.lease_token)
        self._steps = 0

    def close(self) -> None:
        self.known.close()
        self.target.close()
        self.bystander.close()
        self.channel.close()
        self.db.close()

    def _refill(self) -> None:
        """Keep the fuzzed worker holding real leases (outcomes use them up)."""
        self.stub.InvokeBatch(
            client_pb2.InvokeBatchRequest(task="fz", payloads_json=["1"] * LEASES), timeout=10
        )
        count = len(self.leases)
        while len(self.leases) == count:  # at least one arrives
            self._next("leases")

    def _next(self, kind: str) -> Any:
        """The fuzzed stream's next message of `kind`; leases arriving meanwhile are kept."""
        while True:
            message = self.target.received.get(timeout=10)
            if isinstance(message, Exception):
                raise AssertionError(f"the fuzzed worker's stream was closed: {message}")
            if message.WhichOneof("kind") == "leases":
                self.leases += [(x.execution_id, x.lease_token) for x in message.leases.items]
            if message.WhichOneof("kind") == kind:
                return message

    def _rows(self) -> tuple[int, ...]:
        return tuple(self.db.execute(query).fetchone()[0] for query in ROWS)

    def summary(self) -> dict[str, Counter[str]]:
        by_kind: dict[str, Counter[str]] = {}
        for (kind, code), n in self.counts.items():
            by_kind.setdefault(kind, Counter())[code] += n
        return by_kind

    # -- client RPCs -----------------------------------------------------------------------

    def client(self, method: str, request: Any) -> None:
        before = self._rows()
        timeout = 1.0 if method == "WaitExecution" else 10.0
        try:
            getattr(self.stub, method)(request, timeout=timeout)
            code = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            code = exc.code()
            details = exc.details() or ""
            assert code not in FORBIDDEN, f"{method} -> {code}: {details}"
            assert code != grpc.StatusCode.DEADLINE_EXCEEDED, f"{method} missed its deadline"
            assert len(details) <= 1100, f"{method}: a {len(details)}-character message"
            assert self._rows() == before, f"{method} was refused ({code}) but wrote rows"
        self.counts[(method, code.name)] += 1
        self.check_serving()

    # -- Register --------------------------------------------------------------------------

    def register(self, register: worker_pb2.Register) -> None:
        before = self._rows()
        with grpc.insecure_channel(self.address) as channel:
            stream = worker_pb2_grpc.WorkerServiceStub(channel).Connect(
                iter([worker_pb2.WorkerMessage(register=register)]), timeout=20
            )
            try:
                first = next(stream)
                assert first.WhichOneof("kind") == "registered", first
                code = grpc.StatusCode.OK
            except grpc.RpcError as exc:
                code = exc.code()
                assert code == grpc.StatusCode.INVALID_ARGUMENT, f"Register -> {code}: " + (
                    exc.details() or ""
                )
                assert self._rows() == before, f"refused Register wrote rows: {exc.details()}"
            stream.cancel()
        self.counts[("Register", code.name)] += 1
        self.check_serving()

    # -- worker messages -------------------------------------------------------------------

    def _fill(self, item: Any) -> None:
        """Replace the strategy's placeholders with a lease the fuzzed worker holds."""
        if item.execution_id.startswith(LEASE_ID):
            index = int(item.execution_id.removeprefix(LEASE_ID)) % len(self.leases)
            execution_id, token = self.leases[index]
            item.execution_id = execution_id
            if item.lease_token == LEASE_TOKEN:
                item.lease_token = token
        elif item.lease_token == LEASE_TOKEN:  # a real token under another id
            item.lease_token = self.leases[0][1]

    def worker(self, message: worker_pb2.WorkerMessage) -> None:
        kind = message.WhichOneof("kind") or ""
        if len(self.leases) < 5:
            self._refill()
        items = (
            getattr(message, kind).leases if kind == "heartbeat" else getattr(message, kind).items
        )
        for item in items:
            self._fill(item)
        self.target.send(message)
        if kind == "step_saves":
            statuses = [name for name, _ in self._acks("step_acks", len(message.step_saves.items))]
        elif kind == "outcomes":
            acks = self._acks("outcome_acks", len(message.outcomes.items))
            statuses = [name for name, _ in acks]
            # only a recorded outcome ends a lease (a refused one leaves it held)
            ended = {ref for name, ref in acks if name == "WRITE_STATUS_OK"}
            self.leases = [lease for lease in self.leases if lease not in ended]
        else:
            statuses = ["sent"]
        for status in statuses:
            self.counts[(f"worker:{kind}", status)] += 1
        self.check_bystander()

    def _acks(self, kind: str, count: int) -> list[tuple[str, tuple[str, str]]]:
        """(status name, (execution id, token)) of the next `count` acks of `kind`."""
        acks: list[tuple[str, tuple[str, str]]] = []
        while len(acks) < count:
            items = getattr(self._next(kind), kind).items
            acks += [
                (
                    worker_pb2.WriteStatus.Name(a.status),
                    (a.execution_id, getattr(a, "lease_token", "")),
                )
                for a in items
            ]
        return acks

    def check_bystander(self) -> None:
        """The other worker's stream works: its step save is acknowledged as written."""
        self._steps += 1
        execution_id, token = self.bystander_lease
        ack = self.bystander.save_step(execution_id, token, f"s{self._steps}", "1")
        assert ack.status == worker_pb2.WRITE_STATUS_OK, ack

    def check_serving(self) -> None:
        self.stub.ListQueues(client_pb2.ListQueuesRequest(), timeout=10)

    def drain_unexpected(self) -> None:
        """Nothing but known replies arrived on the fuzzed stream."""
        try:
            while True:
                message = self.target.received.get_nowait()
                assert not isinstance(message, Exception), message
        except queue.Empty:
            pass
