"""One log line per event of an execution's life on this worker (started, released, failed,
succeeded, cancelled, abandoned), each naming the execution, its attempt and its task.

The lines go to the `conductor_worker.executions` logger; each record also carries the
fields `event`, `task`, `execution_id` and `attempt` (`--log-format json` prints them).
An outcome is logged when the coordinator acknowledges it, so that a failed attempt's line
can say when it will be retried (the coordinator picks the backoff, jitter included).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from conductor.v1 import worker_pb2

log = logging.getLogger("conductor_worker.executions")

_REASONS = {
    worker_pb2.RELEASE_REASON_SHUTDOWN: "the worker is shutting down",
    worker_pb2.RELEASE_REASON_WINDOW: "the task's window closed",
    worker_pb2.RELEASE_REASON_SLEEP: "ctx.sleep",
    worker_pb2.RELEASE_REASON_UNAVAILABLE: "this worker cannot run it",
    worker_pb2.RELEASE_REASON_CANCELLED: "cancelled",
}


@dataclass
class Run:
    """What the log lines of one leased run need to know."""

    execution_id: str
    task: str
    attempt: int
    max_attempts: int
    #: steps the execution has recorded (from its lease, then each acknowledged save)
    steps: int = 0
    #: the coordinator's clock minus this machine's (time.time()), from the lease
    clock_offset: float = 0.0
    started: float = field(default_factory=time.monotonic)

    @property
    def name(self) -> str:
        return f"execution {self.execution_id} attempt {self.attempt}/{self.max_attempts}"

    def _log(self, level: int, event: str, text: str) -> None:
        log.log(level, "%s (%s): %s", self.name, self.task, text, extra={
            "event": event, "task": self.task, "execution_id": self.execution_id,
            "attempt": self.attempt,
        })

    def log_started(self) -> None:
        if not log.isEnabledFor(logging.INFO):  # (a worker at WARNING pays nothing per run)
            return
        recorded = f", {_steps(self.steps)} recorded earlier" if self.steps else ""
        self._log(logging.INFO, "started", f"started{recorded}")

    def log_step(self, name: str) -> None:
        self.steps += 1
        if log.isEnabledFor(logging.DEBUG):
            self._log(logging.DEBUG, "step", f"step {name!r} recorded ({_steps(self.steps)})")

    def log_abandoned(self) -> None:
        self._log(logging.WARNING, "abandoned",
                  "abandoned: the lease was lost (another worker may run it now)")

    def log_outcome(self, outcome: worker_pb2.Outcome, ack: worker_pb2.OutcomeAck) -> None:
        """The line of an acknowledged outcome (what it did to the execution)."""
        kind = outcome.WhichOneof("result")
        if not log.isEnabledFor(logging.WARNING if kind == "failed" else logging.INFO):
            return
        took = f"{time.monotonic() - self.started:.2f}s, {_steps(self.steps)}"
        if ack.state == "cancelled":
            self._log(logging.INFO, "cancelled", f"cancelled after {took}")
        elif kind == "completed":
            self._log(logging.INFO, "succeeded", f"succeeded in {took}")
        elif kind == "released":
            why = _REASONS.get(outcome.released.reason, "unspecified")
            self._log(logging.INFO, "released",
                      f"released ({why}) after {took}; no attempt counted{self._again(ack)}")
        elif kind == "failed":
            error = outcome.failed.error
            text = f"failed after {took}: {error.type}: {_first_line(error.message)}"
            if ack.state == "pending":
                self._log(logging.WARNING, "failed", text + self._again(ack, "retry"))
            else:
                self._log(logging.ERROR, "failed", text + "; no retry left (execution failed)")

    def _again(self, ack: worker_pb2.OutcomeAck, what: str = "") -> str:
        """'; retry in 4.2s' (`what` given: always), '; runs again in 60.0s' (a release
        that waits)."""
        if not ack.HasField("run_at"):
            return ""
        wait = max(0.0, ack.run_at.ToMicroseconds() / 1e6 - (time.time() + self.clock_offset))
        if not what and wait < 1:
            return ""
        return f"; {what or 'runs again'} in {wait:.1f}s"


def _steps(n: int) -> str:
    return f"{n} step" if n == 1 else f"{n} steps"


def _first_line(text: str, limit: int = 200) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[:limit] + "..."
