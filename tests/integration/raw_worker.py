"""A hand-driven worker stream for protocol tests: send WorkerMessages, read replies."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import grpc

from conductor.v1 import worker_pb2, worker_pb2_grpc


def definition(name: str, capacity: int = 10, **fields: Any) -> worker_pb2.TaskDefinition:
    return worker_pb2.TaskDefinition(
        name=name,
        processes=1,
        capacity=capacity,
        max_attempts=fields.pop("max_attempts", 3),
        retry=worker_pb2.RetryPolicy(
            initial_backoff_seconds=0.01, max_backoff_seconds=0.02, multiplier=2, jitter=0
        ),
        **fields,
    )


class RawWorker:
    """One WorkerService.Connect stream driven by the test.

    It sends an empty heartbeat every half interval (so the coordinator does not give the
    stream up as silent) unless `heartbeat` is False; empty heartbeats renew no lease, so a
    test's leases still expire unless it renews them itself."""

    def __init__(self, address: str, *tasks: worker_pb2.TaskDefinition,
                 worker_id: str = "raw-worker",
                 held: list[worker_pb2.LeaseRef] | None = None,
                 heartbeat: bool = True, drain: bool = False) -> None:
        self.channel = grpc.insecure_channel(address)
        self._out: queue.Queue[worker_pb2.WorkerMessage | None] = queue.Queue()
        self.received: queue.Queue[worker_pb2.CoordinatorMessage | Exception] = queue.Queue()
        self.send(worker_pb2.WorkerMessage(register=worker_pb2.Register(
            worker_id=worker_id, hostname="test", pid=1, tasks=list(tasks),
            held_leases=held or [], drain=drain)))
        self._responses = worker_pb2_grpc.WorkerServiceStub(self.channel).Connect(self._requests())
        threading.Thread(target=self._read, daemon=True).start()
        self.registered = self.next("registered").registered
        self._closed = threading.Event()
        if heartbeat:
            threading.Thread(target=self._beat, daemon=True).start()

    def _beat(self) -> None:
        interval = self.registered.heartbeat_interval_seconds / 2
        while not self._closed.wait(interval):
            self.send(worker_pb2.WorkerMessage(heartbeat=worker_pb2.Heartbeat()))

    def _requests(self) -> Iterator[worker_pb2.WorkerMessage]:
        while (message := self._out.get()) is not None:
            yield message

    def _read(self) -> None:
        try:
            for message in self._responses:
                if message.WhichOneof("kind") == "clock_sync":  # confirmed, as workers do
                    self.send(worker_pb2.WorkerMessage(clock_synced=worker_pb2.ClockSynced(
                        sequence=message.clock_sync.sequence)))
                self.received.put(message)
            self.received.put(EOFError("the coordinator ended the stream"))
        except grpc.RpcError as exc:
            self.received.put(exc)

    def send(self, message: worker_pb2.WorkerMessage) -> None:
        self._out.put(message)

    def next(self, kind: str, timeout: float = 10.0) -> worker_pb2.CoordinatorMessage:
        """The next message of `kind` (others are skipped)."""
        while True:
            message = self.received.get(timeout=timeout)
            if isinstance(message, Exception):
                raise message
            if message.WhichOneof("kind") == kind:
                return message

    def save_step(
        self, execution_id: str, token: str, name: str, result: str
    ) -> worker_pb2.StepAck:
        self.send(worker_pb2.WorkerMessage(step_saves=worker_pb2.StepSaves(items=[
            worker_pb2.StepSave(execution_id=execution_id, lease_token=token, name=name,
                                result_json=result)])))
        return self.next("step_acks").step_acks.items[0]

    def complete(self, execution_id: str, token: str, result: str) -> worker_pb2.OutcomeAck:
        self.send(worker_pb2.WorkerMessage(outcomes=worker_pb2.Outcomes(items=[
            worker_pb2.Outcome(execution_id=execution_id, lease_token=token,
                               completed=worker_pb2.Completed(result_json=result))])))
        return self.next("outcome_acks").outcome_acks.items[0]

    def close(self) -> None:
        self._closed.set()
        self._out.put(None)
        self.channel.close()
