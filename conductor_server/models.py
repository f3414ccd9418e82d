"""Domain objects of the coordinator. Imports neither protobuf nor psycopg."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple


class State(enum.StrEnum):
    """Lifecycle state of an execution (the database enum's values)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (State.SUCCEEDED, State.FAILED, State.CANCELLED)


class ConductorError(Exception):
    """Base of the errors the API maps to gRPC status codes."""


class NotFound(ConductorError):
    """An unknown task or execution (NOT_FOUND)."""


class InvalidArgument(ConductorError):
    """Bad input; the message names the field (INVALID_ARGUMENT)."""

    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(f"{field_name}: {problem}")
        self.field = field_name


class FailedPrecondition(ConductorError):
    """The execution's state does not allow the call (FAILED_PRECONDITION)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter between attempts."""

    initial_backoff: float = 1.0
    max_backoff: float = 300.0
    multiplier: float = 2.0
    jitter: float = 0.2
    non_retryable_errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class Retention:
    """How long a task's finished executions are kept, in seconds per final state, and when
    their data is redacted; None: the coordinator's default."""

    succeeded: float | None = None
    failed: float | None = None
    cancelled: float | None = None
    redact_after: float | None = None


@dataclass(frozen=True)
class TaskDef:
    """A task type as registered by a worker."""

    name: str
    max_attempts: int = 3
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    window_start: str | None = None
    window_end: str | None = None
    timezone: str = "UTC"
    concurrency: int = 0
    #: static cron schedules: (name, expression) pairs
    schedules: tuple[tuple[str, str], ...] = ()
    #: events it runs on: (event name, filter JSON object text) pairs
    subscriptions: tuple[tuple[str, str], ...] = ()
    retention: Retention = field(default_factory=Retention)
    #: execution timeout in seconds (None: none); an invoke may override it
    timeout: float | None = None
    #: the task invoked once with each execution that fails for good (a dead letter)
    on_failure: str | None = None
    #: the payload field (a dotted path, split) whose value is an execution's key
    key_path: tuple[str, ...] = ()
    #: at most this many running per key (0: no per-key limit)
    key_concurrency: int = 0
    #: at most rate_count leases per rate_period seconds (0: no rate limit), in the bucket
    #: named rate_limit_name (the task's name unless the limit is shared)
    rate_count: int = 0
    rate_period: float = 0.0
    rate_limit_name: str = ""
    #: the queue of executions invoked without one
    queue: str = "default"

    @property
    def keyed(self) -> bool:
        """Whether its executions carry a key (per-key limits apply to them)."""
        return bool(self.key_path) or self.key_concurrency > 0

    @property
    def limited(self) -> bool:
        """Whether leases need the limited statement (per-key caps or a rate limit)."""
        return self.key_concurrency > 0 or self.rate_count > 0

    @property
    def bucket(self) -> str:
        """The rate limit's bucket name."""
        return self.rate_limit_name or self.name


@dataclass(frozen=True)
class Schedule:
    """A cron schedule of a task."""

    task: str
    name: str
    cron: str
    timezone: str = "UTC"
    payload_json: str = "null"
    static: bool = False
    missed: str = "latest"
    missed_limit: int = 1
    next_fire_at: datetime | None = None


@dataclass(frozen=True)
class Fire:
    """One execution a schedule creates."""

    task: str
    schedule: str
    payload_json: str
    fire_time: datetime


@dataclass(frozen=True)
class NewExecutions:
    """Validated input of Invoke / InvokeBatch."""

    task: str
    payloads: list[str]
    run_at: datetime
    priority: int = 0
    queue: str = "default"
    max_attempts: int = 3
    dedupe_key: str | None = None
    #: an InvokeBatch's dedupe key per payload (None: that item has none); (): no keys
    dedupe_keys: tuple[str | None, ...] = ()
    #: the invoker's W3C traceparent (OpenTelemetry), or None
    trace_context: str | None = None
    #: override of the task's execution timeout, in seconds (None: the task's)
    timeout: float | None = None
    #: InvokeOptions.concurrency_key (None: from the payload at key_path, if any)
    concurrency_key: str | None = None
    key_path: tuple[str, ...] = ()
    #: whether executions get '' rather than NULL when they have no key (keyed task)
    keyed: bool = False
    #: seconds of debounce or throttle (with dedupe_key); 0: none
    debounce: float = 0.0
    throttle: float = 0.0


@dataclass(frozen=True)
class ErrorInfo:
    """What went wrong in an attempt."""

    type: str
    message: str
    traceback: str = ""


@dataclass(frozen=True)
class Execution:
    """A stored execution."""

    id: int
    task: str
    queue: str
    state: State
    payload_json: str
    result_json: str | None
    error: ErrorInfo | None
    priority: int
    run_at: datetime
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempt: int
    max_attempts: int
    dedupe_key: str | None
    cancel_requested: bool
    schedule: str | None = None
    fire_time: datetime | None = None
    #: the execution whose ctx.invoke created this one
    parent_id: int | None = None
    #: what a pending execution waits for ('children:STEP', 'signal:STEP', 'event:STEP')
    waiting_for: str | None = None
    #: runs leased so far (releases included), when the last one was leased, and by whom
    runs: int = 0
    leased_at: datetime | None = None
    worker_id: str | None = None
    #: the execution this one reruns
    rerun_of: int | None = None
    #: for a dead letter: the execution that failed for good
    dead_letter_of: int | None = None
    #: the execution timeout its attempts run under (seconds; None: none)
    timeout: float | None = None
    #: when its data was redacted (redact_after)
    redacted_at: datetime | None = None
    #: its concurrency / rate-limit key ('' or None: none)
    concurrency_key: str | None = None

    def attempts(self, ended: list[Attempt]) -> list[Attempt]:
        """The attempt history: the ended runs, and the last run when the execution row holds
        it (the one running now, or the success, which gets no attempt row)."""
        if self.state not in (State.RUNNING, State.SUCCEEDED) or self.leased_at is None:
            return ended
        if ended and ended[-1].n >= self.runs:
            return ended
        last = Attempt(
            self.runs, self.attempt, self.worker_id or "", self.leased_at,
            self.finished_at if self.state is State.SUCCEEDED else None, self.state.value,
        )
        return [*ended, last]


@dataclass(frozen=True)
class Step:
    """A recorded step result."""

    name: str
    result_json: str
    created_at: datetime


@dataclass(frozen=True)
class Attempt:
    """One run of an execution: an attempt, or a release (which gives its attempt back)."""

    #: 1-based run number over the execution's life
    n: int
    #: the attempt number it counted as
    attempt: int
    worker_id: str
    started_at: datetime
    #: None while it runs
    finished_at: datetime | None
    #: running | succeeded | failed | released | cancelled
    outcome: str
    #: why a release happened (empty otherwise)
    reason: str = ""
    error: ErrorInfo | None = None


@dataclass(frozen=True)
class Lease:
    """The right to run one attempt of one execution."""

    execution_id: int
    task: str
    token: str
    attempt: int
    max_attempts: int
    payload_json: str
    steps: dict[str, str]
    granted_at: datetime
    schedule: str | None = None
    fire_time: datetime | None = None
    #: when it became ready (its run_at), for dispatch latency
    ready_at: datetime | None = None
    #: for a task with a window: when the open window closes, and the opening after that
    window_closes_at: datetime | None = None
    window_reopens_at: datetime | None = None
    priority: int = 0
    #: the W3C traceparent the execution was invoked with (OpenTelemetry), or None
    trace_context: str | None = None
    #: the attempt's execution timeout in seconds (0: none)
    timeout: float = 0.0

    def size(self) -> int:
        """About how many bytes it takes in a message (its payload and recorded steps)."""
        steps = sum(len(k) + len(v) for k, v in self.steps.items()) if self.steps else 0
        return len(self.payload_json) + steps + 256


@dataclass(frozen=True)
class LeaseRef:
    """An (execution, token) pair a worker names in a write."""

    execution_id: int
    token: str


class StepWrite(NamedTuple):
    """A step result a worker asks to record (a tuple: there are many of these)."""

    execution_id: int
    token: str
    name: str
    result_json: str
    #: the worker that sent it: only the lease's holder may write ("": the coordinator's own)
    worker_id: str = ""


#: The outcome of a StepWrite: the recorded result JSON (the first one saved under that
#: name), or None when the lease was stale and nothing was written.
StepWriteResult = str | None


class OutcomeKind(enum.Enum):
    COMPLETED = "completed"
    FAILED = "failed"
    RELEASED = "released"


@dataclass(frozen=True)
class OutcomeWrite:
    """The end of one leased run."""

    lease: LeaseRef
    kind: OutcomeKind
    result_json: str = "null"
    error: ErrorInfo | None = None
    retryable: bool = True
    run_at: datetime | None = None
    lost: bool = False
    #: why a release happened (shutdown, window, sleep, cancelled, unavailable)
    reason: str = ""
    #: the worker that sent it: only the lease's holder may write ("": the coordinator's own)
    worker_id: str = ""


@dataclass(frozen=True)
class OutcomeApplied:
    """What an applied outcome did to its execution."""

    execution_id: int
    task: str
    state: State
    run_at: datetime | None


@dataclass(frozen=True)
class LogLine:
    """A line a handler logged through ctx.logger (sequence: its number once stored)."""

    execution_id: int
    attempt: int
    level: str
    message: str
    logged_at: datetime
    sequence: int = 0


@dataclass(frozen=True)
class WorkerInfo:
    """A connected worker."""

    worker_id: str
    hostname: str
    pid: int
    tasks: tuple[str, ...]
    leases: int
    connected_at: datetime
    last_seen: datetime
    coordinator: str
    #: leases it accepts at once over all its tasks (as registered)
    capacity: int = 0
    #: the queues it takes work from (None: every queue)
    queues: tuple[str, ...] | None = None


@dataclass(frozen=True)
class QueueStats:
    """Queue figures of one task."""

    task: str
    ready: int
    waiting: int
    running: int
    oldest_ready_at: datetime | None
    #: workers connected now that serve the task
    live_workers: int = 0


@dataclass(frozen=True)
class TaskInfo:
    """A registered task as the registry sees it."""

    name: str
    #: workers connected now that serve it
    workers: tuple[str, ...]
    #: when a worker last registered or served it
    last_seen: datetime
    retention: Retention
