"""`@task` and the registry of task definitions."""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import math
import pickle
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import time
from typing import Any, Generic, ParamSpec, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from . import durations, flow, typed
from .batching import MAX_BATCH, MAX_BATCH_WAIT
from .context import Event
from .errors import TaskDefinitionError

P = ParamSpec("P")
R = TypeVar("R")

_REGISTRY: dict[str, Task[..., Any]] = {}
_NAME = re.compile(r"^[A-Za-z0-9_.:\-]{1,200}$")
_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


@dataclass(frozen=True)
class TaskOptions:
    """Everything @task accepts besides the handler."""

    name: str
    #: the most pool processes of this task (its pool's, when shared) one worker runs
    processes: int = 1
    threads: int = 1
    #: a shared pool's name (tasks naming the same pool share its processes); None: own pool
    pool: str | None = None
    #: pool processes kept running while idle (the rest start on demand, stop when idle)
    min_processes: int = 0
    max_attempts: int = 3
    backoff: float = 1.0
    max_backoff: float = 300.0
    backoff_multiplier: float = 2.0
    jitter: float = 0.2
    non_retryable: tuple[str, ...] = ()
    window: tuple[str, str] | None = None
    timezone: str = "UTC"
    concurrency: int = 0
    #: extra leases beyond one per slot; None: adaptive (see conductor_worker/window.py)
    prefetch: int | None = None
    #: static cron schedules: (name, expression) pairs
    schedules: tuple[tuple[str, str], ...] = ()
    #: events that create an execution (@task(on=...)), and the payload filter for them
    on: tuple[str, ...] = ()
    filter: tuple[tuple[str, Any], ...] = ()
    #: seconds finished executions are kept, per final state: (state, seconds) pairs; a
    #: state not named takes the coordinator's default
    retention: tuple[tuple[str, float], ...] = ()
    #: seconds after the end when payload, result, step results and error texts are dropped
    redact_after: float | None = None
    #: execution timeout in seconds (None: none): the pool process of a run that exceeds it
    #: is stopped and the attempt fails with error type Timeout
    timeout: float | None = None
    #: the task invoked once with each execution of this one that fails for good
    on_failure: str | None = None
    #: a batch handler's most events per call (0: not a batch handler), and the seconds
    #: the first lease of a batch waits for more
    batch: int = 0
    batch_wait: float = 0.5
    #: the payload field (dotted path) whose value is an execution's key; with it (and no
    #: `key_concurrency`), `concurrency` is the limit per key; `rate_limit` applies per key
    key: str | None = None
    #: at most this many running per key (None: not set); when set, `concurrency` stays the
    #: cap over all the task's running executions, so both limits apply at once
    key_concurrency: int | None = None
    #: "N/s", "N/m", "N/h", "N/d" (or "N/10s"): leases per period, burst N
    rate_limit: str | None = None
    #: share the rate limit with the other tasks naming it
    rate_limit_name: str | None = None
    #: the queue of executions invoked without one
    queue: str | None = None

    @property
    def slots(self) -> int:
        """Executions of this task one worker runs at once."""
        return self.processes * self.threads

    @property
    def capacity(self) -> int:
        """Leases the worker accepts at once to begin with: one per running slot plus the
        prefetch (adaptive: as many again, until the worker has measured the task)."""
        if self.batch:  # a full batch per slot, and one more gathering meanwhile
            return (self.slots + 1) * self.batch + (self.prefetch or 0)
        return self.slots + (self.slots if self.adaptive else self.prefetch or 0)

    @property
    def adaptive(self) -> bool:
        """Whether the worker sizes the task's prefetch from what it measures."""
        return self.prefetch is None and not self.batch


class Task(Generic[P, R]):
    """A registered task: call it directly to run the handler in-process (for unit tests)."""

    def __init__(self, fn: Callable[P, R], options: TaskOptions) -> None:
        self.fn = fn
        self.options = options
        self.name = options.name
        self.is_async = inspect.iscoroutinefunction(fn)
        self.__module__ = fn.__module__
        self.__qualname__ = fn.__qualname__
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__

    @functools.cached_property
    def payload_type(self) -> Any | None:
        """X when the handler's first parameter is annotated `Event[X]` (a batch handler's:
        `list[Event[X]]`): payloads are validated and parsed into X before the handler runs
        (needs pydantic)."""
        if self.options.batch:
            return typed.batch_payload_type(self.fn, Event)
        return typed.payload_type(self.fn, Event)

    @functools.cached_property
    def result_type(self) -> Any | None:
        """The handler's return annotation, for `Client.wait(id, result_type=task)`."""
        return typed.result_type(self.fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_load_task, (self.__module__, self.__qualname__))

    def __repr__(self) -> str:
        return f"<Task {self.name!r} {self.__module__}.{self.__qualname__}>"


def _load_task(module: str, qualname: str) -> Task[..., Any]:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, Task):
        raise TypeError(f"{module}.{qualname} is not a task")
    return obj


def task(
    fn: Callable[P, R] | None = None,
    *,
    name: str | None = None,
    processes: int = 1,
    threads: int = 1,
    pool: str | None = None,
    min_processes: int = 0,
    max_attempts: int = 3,
    backoff: float = 1.0,
    max_backoff: float = 300.0,
    backoff_multiplier: float = 2.0,
    jitter: float = 0.2,
    non_retryable: Iterable[type[BaseException] | str] = (),
    window: tuple[str, str] | None = None,
    timezone: str = "UTC",
    concurrency: int = 0,
    prefetch: int | None = None,
    cron: str | Iterable[str] | Mapping[str, str] | None = None,
    on: str | Iterable[str] = (),
    filter: Mapping[str, Any] | None = None,
    retention: Mapping[str, float | str] | None = None,
    redact_after: float | str | None = None,
    timeout: float | str | None = None,
    on_failure: str | Task[..., Any] | None = None,
    batch: int = 0,
    batch_wait: float | str = 0.5,
    key: str | None = None,
    key_concurrency: int | None = None,
    rate_limit: str | None = None,
    rate_limit_name: str | None = None,
    queue: str | None = None,
) -> Any:
    """Declare a task. Use as `@task` or `@task(name=..., processes=..., ...)`.

    The handler takes `(event, ctx)` and may be `def` or `async def`; it runs in a child
    process of the worker. `event.payload` is the JSON payload; the return value must be
    JSON-serialisable. Options are checked here, so a bad one fails at import time.

    `threads` runs that many executions at once in each pool process (for handlers that
    mostly wait on I/O): in threads for a `def` handler, as coroutines on the process's event
    loop for an `async def` one. A process that dies then fails every run it had started.

    `processes` is the most pool processes that run this task on one worker: they start when
    leases arrive and stop after the worker's pool idle timeout, except `min_processes` of
    them, which start with the worker and stay. `pool="io"` runs the task in a pool shared
    with the other tasks that name it (the pool's size is the largest `processes` and
    `threads` among them); a crash then fails only the run of the process that crashed.

    `cron` declares static schedules, read in `timezone`: one expression, a list of them
    (each named by its expression) or a dict {name: expression}. `event.schedule` tells the
    handler which one fired it (None for a direct invoke).

    `on` subscribes the task to one event name or a list of them: every emitted event of
    such a name whose payload matches `filter` creates one execution with the event's
    payload. `filter` is {dotted.path: value}: each path must equal its value (JSON
    equality), e.g. {"region": "eu", "customer.tier": "gold"} (docs/workflows.md).

    `retention` keeps finished executions for a while per final state, e.g.
    `{"succeeded": "7d", "failed": "30d", "cancelled": "7d"}` (seconds or "90s", "15m",
    "12h", "7d", "2w"; 0 deletes them as soon as they finish); a state left out takes the
    coordinator's default. `redact_after` drops payload, result, step results and error
    texts that long after the end, while the run's metadata stays until it is deleted.

    `timeout` (seconds, or "30s", "5m" ...) ends an attempt that runs longer for real: the
    pool process running it is stopped (SIGUSR1, then SIGKILL after a second) and replaced,
    and the attempt fails with error type `Timeout` (retried per the task's policy). Other
    runs in that process (`threads` > 1) are released without counting an attempt. An
    invoke may override it (`Client.invoke(..., timeout=...)`). The time counts from when a
    pool process starts the run (a lease waiting in the worker for a free process does not
    use it up).

    `on_failure` names a task (or is the @task object) invoked once, with {"execution_id",
    "task", "payload", "error", "attempts", "failed_at"}, for every execution of this task
    that fails for good: a dead letter (docs/concepts.md, "Dead letters").

    `batch=N` makes a batch handler: it takes `(events, ctx)`, a list of up to N events, and
    returns a list of as many results, in order. The worker gathers leases until it has N
    or the first has waited `batch_wait` seconds. Each item stays its own execution (its
    own result, attempts and fencing); an item whose result is an exception, or that the
    handler passed to `ctx.fail(i, error)`, fails alone and only it is retried; when the
    handler raises, every item fails. `events: list[Event[Model]]` parses each payload (one
    that does not fit fails alone, InvalidPayload); `ctx.logger_for(i)` records lines on
    item i's execution. Batch handlers have no steps (docs/flow-control.md, "Batch
    handlers").
    Flow control (docs/flow-control.md): `concurrency=N` caps running executions across all
    workers; with `key="customer.id"` (a payload field, dotted path) it is the cap *per key*
    instead (an invoke's `concurrency_key=` overrides the field). `key_concurrency=M` sets
    the per-key cap on its own, keeping `concurrency` as the cap over all keys: both hold
    at once (executions without a key are limited by `concurrency` only). `rate_limit="100/s"`
    allows that many leases per period (burst: the count), per key with `key`;
    `rate_limit_name="openai"` shares one limit among the tasks naming it. Raising
    `RateLimited(retry_after=s)` in the handler pauses the limit for everyone. `queue` is
    the queue of executions invoked without one (workers with `--queues` take only those).
    """

    def decorate(f: Callable[P, R]) -> Task[P, R]:
        task_name = name or f.__name__
        options = TaskOptions(
            name=task_name,
            processes=processes,
            threads=threads,
            pool=pool,
            min_processes=min_processes,
            max_attempts=max_attempts,
            backoff=backoff,
            max_backoff=max_backoff,
            backoff_multiplier=backoff_multiplier,
            jitter=jitter,
            non_retryable=tuple(e if isinstance(e, str) else e.__name__ for e in non_retryable),
            window=tuple(window) if window is not None else None,  # type: ignore[arg-type]
            timezone=timezone,
            concurrency=concurrency,
            prefetch=prefetch,
            schedules=_schedules(cron),
            on=(on,) if isinstance(on, str) else tuple(on),
            filter=tuple(dict(filter or {}).items()),
            retention=_retention(task_name, retention),
            redact_after=_duration(task_name, "redact_after", redact_after),
            timeout=_duration(task_name, "timeout", timeout),
            on_failure=on_failure.name if isinstance(on_failure, Task) else on_failure,
            batch=batch,
            batch_wait=_batch_wait(task_name, batch_wait),
            key=key,
            key_concurrency=key_concurrency,
            rate_limit=rate_limit,
            rate_limit_name=rate_limit_name,
            queue=queue,
        )
        validate_options(options)
        defined = Task(f, options)
        _REGISTRY[options.name] = defined
        return defined

    return decorate(fn) if fn is not None else decorate


_FINAL_STATES = ("succeeded", "failed", "cancelled")


def _duration(task_name: str, option: str, value: object) -> float | None:
    if value is None:
        return None
    try:
        return durations.seconds(value)
    except ValueError as exc:
        raise TaskDefinitionError(f"task {task_name!r}: {option}: {exc}") from None


def _retention(
    task_name: str, retention: Mapping[str, float | str] | None
) -> tuple[tuple[str, float], ...]:
    if retention is None:
        return ()
    if not isinstance(retention, Mapping):
        raise TaskDefinitionError(f"task {task_name!r}: retention: must be a dict of "
                                  f"{', '.join(_FINAL_STATES)} to durations")
    pairs = []
    for state, value in retention.items():
        if state not in _FINAL_STATES:
            raise TaskDefinitionError(f"task {task_name!r}: retention: unknown state {state!r}; "
                                      f"known: {', '.join(_FINAL_STATES)}")
        seconds = _duration(task_name, f"retention[{state!r}]", value)
        assert seconds is not None
        pairs.append((state, seconds))
    return tuple(pairs)


def _schedules(cron: str | Iterable[str] | Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    if cron is None:
        return ()
    if isinstance(cron, str):
        return ((cron, cron),)
    if isinstance(cron, Mapping):
        return tuple((str(k), str(v)) for k, v in cron.items())
    return tuple((str(c), str(c)) for c in cron)


def validate_options(o: TaskOptions) -> None:
    """Raise TaskDefinitionError naming the option that is wrong."""

    def fail(option: str, problem: str) -> None:
        raise TaskDefinitionError(f"task {o.name!r}: {option}: {problem}")

    if not _NAME.match(o.name):
        fail("name", "1-200 characters of letters, digits and _ . : -")
    for option, value, low in (
        ("processes", o.processes, 1),
        ("threads", o.threads, 1),
        ("max_attempts", o.max_attempts, 1),
        ("concurrency", o.concurrency, 0),
        ("prefetch", 0 if o.prefetch is None else o.prefetch, 0),
        ("min_processes", o.min_processes, 0),
    ):
        if not isinstance(value, int) or value < low:
            fail(option, f"must be an integer >= {low}, got {value!r}")
    if o.min_processes > o.processes:
        fail("min_processes", f"must be <= processes ({o.processes}), got {o.min_processes}")
    if o.pool is not None and not (isinstance(o.pool, str) and _NAME.match(o.pool)):
        fail("pool", f"1-200 characters of letters, digits and _ . : -, got {o.pool!r}")
    _validate_retry(o, fail)
    try:
        ZoneInfo(o.timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        fail("timezone", f"{o.timezone!r} is not an IANA time zone")
    if o.window is not None:
        _validate_window(o.window, fail)
    for name, expression in o.schedules:
        if len(expression.split()) != 5 or not croniter.is_valid(expression):
            fail("cron", f"{expression!r} ({name}) is not a 5-field cron expression")
    _validate_events(o, fail)
    _validate_flow(o, fail)


def _batch_wait(task_name: str, value: object) -> float:
    seconds = _duration(task_name, "batch_wait", value)
    assert seconds is not None
    return seconds


def _validate_flow(o: TaskOptions, fail: Callable[[str, str], None]) -> None:
    if o.key is not None and (problem := flow.key_problem(o.key)):
        fail("key", problem)
    if o.key_concurrency is not None:
        if isinstance(o.key_concurrency, bool) or not isinstance(o.key_concurrency, int) or not (
            1 <= o.key_concurrency <= flow.MAX_KEY_CONCURRENCY
        ):
            fail("key_concurrency", f"must be an integer 1..{flow.MAX_KEY_CONCURRENCY} (None:"
                 f" no per-key cap of its own), got {o.key_concurrency!r}")
        if 0 < o.concurrency < o.key_concurrency:
            fail("key_concurrency", f"must be <= concurrency (the cap over all keys,"
                 f" {o.concurrency}), got {o.key_concurrency}")
    if o.rate_limit is not None and (problem := flow.rate_problem(o.rate_limit)):
        fail("rate_limit", problem)
    if o.rate_limit_name is not None:
        if o.rate_limit is None:
            fail("rate_limit_name", "needs rate_limit (the shared limit's rate)")
        if problem := flow.name_problem(o.rate_limit_name, "rate limit"):
            fail("rate_limit_name", problem)
    if o.queue is not None and (problem := flow.name_problem(o.queue, "queue")):
        fail("queue", problem)
    _validate_runs(o, fail)


def _validate_runs(o: TaskOptions, fail: Callable[[str, str], None]) -> None:
    """Batches, timeouts and dead letters."""
    if isinstance(o.batch, bool) or not isinstance(o.batch, int) or not (
        0 <= o.batch <= MAX_BATCH
    ):
        fail("batch", f"must be an integer 1..{MAX_BATCH} (0: not a batch handler), got"
             f" {o.batch!r}")
    if not o.batch_wait <= MAX_BATCH_WAIT:
        fail("batch_wait", f"must be 0..{MAX_BATCH_WAIT:g} seconds, got {o.batch_wait!r}")
    if o.timeout is not None and not 0 < o.timeout <= durations.MAX_SECONDS:
        fail("timeout", f"must be > 0 seconds, got {o.timeout!r}")
    if o.on_failure is not None:
        if not isinstance(o.on_failure, str) or not _NAME.match(o.on_failure):
            fail("on_failure", f"must be a task name (1-200 characters of letters, digits and"
                 f" _ . : -) or a @task, got {o.on_failure!r}")
        if o.on_failure == o.name:
            fail("on_failure", "names the task itself; a dead letter needs another task")


def _validate_events(o: TaskOptions, fail: Callable[[str, str], None]) -> None:
    for event in o.on:
        if not isinstance(event, str) or not _NAME.match(event):
            fail("on", f"{event!r} is not an event name (1-200 characters of letters, digits"
                 " and _ . : -)")
    if len(set(o.on)) != len(o.on):
        fail("on", "lists an event twice")
    if o.filter and not o.on:
        fail("filter", "needs on=... (the events it filters)")
    for path, value in o.filter:
        if not isinstance(path, str) or not path or any(not p for p in path.split(".")):
            fail("filter", f"key {path!r} is not a dotted path")
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            fail("filter", f"value of {path!r} is not JSON: {exc}")


def _validate_retry(o: TaskOptions, fail: Callable[[str, str], None]) -> None:
    for option, number in (
        ("backoff", o.backoff),
        ("max_backoff", o.max_backoff),
        ("backoff_multiplier", o.backoff_multiplier),
        ("jitter", o.jitter),
    ):
        if not isinstance(number, int | float) or not math.isfinite(number):
            fail(option, f"must be a finite number, got {number!r}")
    if not 0 < o.backoff <= o.max_backoff:
        fail("backoff", f"need 0 < backoff <= max_backoff, got {o.backoff} and {o.max_backoff}")
    if o.backoff_multiplier < 1:
        fail("backoff_multiplier", f"must be >= 1, got {o.backoff_multiplier}")
    if not 0 <= o.jitter <= 1:
        fail("jitter", f"must be between 0 and 1, got {o.jitter}")


def _validate_window(window: tuple[str, str], fail: Callable[[str, str], None]) -> None:
    if len(window) != 2:
        fail("window", "must be a (start, end) pair of 'HH:MM' times")
    parsed: list[time] = []
    for part, value in zip(("start", "end"), window, strict=False):
        match = _HHMM.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            fail(f"window {part}", f"{value!r} is not a 24-hour time 'HH:MM'")
            return
        parsed.append(time(int(match.group(1)), int(match.group(2))))
    if parsed[0] == parsed[1]:
        fail("window", f"start and end are both {window[0]}; a window needs a length")


def registered() -> dict[str, Task[..., Any]]:
    """Every task defined so far in this process, by name."""
    return dict(_REGISTRY)


def check_registrable(t: Task[..., Any]) -> None:
    """A task must be importable by module and name, so that pool processes can load it."""
    where = f"{t.__module__}.{t.__qualname__}"
    if "<locals>" in t.__qualname__:
        raise TaskDefinitionError(
            f"task {t.name!r} ({where}) is defined inside a function; define tasks at module "
            "top level so that pool processes can import them"
        )
    try:
        loaded = pickle.loads(pickle.dumps(t))
    except Exception as exc:
        raise TaskDefinitionError(
            f"task {t.name!r} ({where}) cannot be pickled for the process pool: {exc}"
        ) from exc
    if loaded is not t:
        raise TaskDefinitionError(
            f"task {t.name!r}: {where} does not name this task; keep the @task object under "
            "the name it was defined with"
        )
    _check_event_annotation(t)
    if t.payload_type is not None:
        typed.check_type(t.payload_type, f"task {t.name!r}: payload annotation")


def _check_event_annotation(t: Task[..., Any]) -> None:
    """A batch handler's first parameter is a list of events, a plain handler's one event:
    an annotation of the other form would leave payloads unparsed without a word."""
    if t.options.batch and typed.payload_type(t.fn, Event) is not None:
        raise TaskDefinitionError(f"task {t.name!r}: a batch handler takes a list of events:"
                                  " annotate its first parameter list[Event[X]], not Event[X]")
    if not t.options.batch and typed.batch_payload_type(t.fn, Event) is not None:
        raise TaskDefinitionError(f"task {t.name!r}: the handler takes one event (not a batch"
                                  " handler: no batch=...): annotate it Event[X], not"
                                  " list[Event[X]]")
