"""`@task` and the registry of task definitions."""

from __future__ import annotations

import functools
import importlib
import inspect
import math
import pickle
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import time
from typing import Any, Generic, ParamSpec, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from . import typed
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
    processes: int = 1
    threads: int = 1
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

    @property
    def slots(self) -> int:
        """Executions of this task one worker runs at once."""
        return self.processes * self.threads

    @property
    def capacity(self) -> int:
        """Leases the worker accepts at once to begin with: one per running slot plus the
        prefetch (adaptive: as many again, until the worker has measured the task)."""
        return self.slots + (self.slots if self.prefetch is None else self.prefetch)


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
        """X when the handler's first parameter is annotated `Event[X]`: payloads are
        validated and parsed into X before the handler runs (needs pydantic)."""
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
) -> Any:
    """Declare a task. Use as `@task` or `@task(name=..., processes=..., ...)`.

    The handler takes `(event, ctx)` and may be `def` or `async def`; it runs in a child
    process of the worker. `event.payload` is the JSON payload; the return value must be
    JSON-serialisable. Options are checked here, so a bad one fails at import time.

    `threads` runs that many executions at once in each pool process (for handlers that
    mostly wait on I/O): in threads for a `def` handler, as coroutines on the process's event
    loop for an `async def` one. A process that dies then fails every run it had started.

    `cron` declares static schedules, read in `timezone`: one expression, a list of them
    (each named by its expression) or a dict {name: expression}. `event.schedule` tells the
    handler which one fired it (None for a direct invoke).
    """

    def decorate(f: Callable[P, R]) -> Task[P, R]:
        options = TaskOptions(
            name=name or f.__name__,
            processes=processes,
            threads=threads,
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
        )
        validate_options(options)
        defined = Task(f, options)
        _REGISTRY[options.name] = defined
        return defined

    return decorate(fn) if fn is not None else decorate


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
    ):
        if not isinstance(value, int) or value < low:
            fail(option, f"must be an integer >= {low}, got {value!r}")
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
    if t.payload_type is not None:
        typed.check_type(t.payload_type, f"task {t.name!r}: payload annotation")
