"""conductor_worker.context: ctx.step, ctx.checkpoint and ctx.cancelled with a fake Link."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from conductor_worker.context import AsyncContext, Context, RunSpec
from conductor_worker.errors import Interrupted, LeaseLost

EXECUTION = "41"
TOKEN = "tok-1"


class FakeLink:
    """Stands in for the pool child's line to its worker."""

    def __init__(self) -> None:
        self.shutdown = False
        self.interrupts: dict[tuple[str, str], tuple[str, float | None]] = {}
        self.clock_sync: tuple[float, float] | None = None
        self.clock_bound: tuple[float, float] | None = None
        self.saved: list[tuple[str, str, str, str]] = []
        #: What the coordinator answers per step name (default: what was sent).
        self.recorded: dict[str, str] = {}

    def save_step(self, key: tuple[str, str], name: str, result_json: str) -> str:
        self.saved.append((*key, name, result_json))
        return self.recorded.get(name, result_json)

    async def save_step_async(self, key: tuple[str, str], name: str, result_json: str) -> str:
        return self.save_step(key, name, result_json)


class CountingFn:
    def __init__(self, value: Any) -> None:
        self.value = value
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        return self.value


def make(steps: dict[str, str] | None = None, cls: type[Context] = Context) -> tuple[Any, FakeLink]:
    spec = RunSpec(
        execution_id=EXECUTION,
        token=TOKEN,
        task="unit-ctx",
        attempt=2,
        max_attempts=3,
        payload_json="{}",
        steps=dict(steps or {}),
    )
    link = FakeLink()
    return cls(spec, link), link


def test_context_exposes_run_details() -> None:
    ctx, _ = make()
    assert (ctx.execution_id, ctx.attempt, ctx.max_attempts, ctx.task) == (
        EXECUTION,
        2,
        3,
        "unit-ctx",
    )


def test_recorded_step_is_returned_without_calling_fn() -> None:
    ctx, link = make({"fetch": '{"rows": [1, 2]}'})
    fn = CountingFn("fresh")
    assert ctx.step("fetch", fn) == {"rows": [1, 2]}
    assert fn.calls == 0
    assert link.saved == []


def test_new_step_runs_once_saves_json_and_returns_decoded_value() -> None:
    ctx, link = make()
    fn = CountingFn((1, "two", {"three": 3.5}))
    result = ctx.step("compute", fn)
    assert fn.calls == 1
    assert len(link.saved) == 1
    execution_id, token, name, text = link.saved[0]
    assert (execution_id, token, name) == (EXECUTION, TOKEN, "compute")
    assert json.loads(text) == [1, "two", {"three": 3.5}]
    assert result == [1, "two", {"three": 3.5}]  # decoded from JSON: the tuple is a list


def test_step_returns_the_value_the_coordinator_recorded() -> None:
    # A concurrent attempt recorded the step first: its result wins.
    ctx, link = make()
    link.recorded["charge"] = '"first"'
    assert ctx.step("charge", CountingFn("second")) == "first"


def test_reusing_a_name_returns_the_first_result() -> None:
    ctx, link = make()
    first = CountingFn({"n": 1})
    second = CountingFn({"n": 2})
    assert ctx.step("same", first) == {"n": 1}
    assert ctx.step("same", second) == {"n": 1}
    assert (first.calls, second.calls) == (1, 0)
    assert len(link.saved) == 1


def test_non_json_result_raises_type_error_naming_step() -> None:
    ctx, link = make()
    with pytest.raises(TypeError, match="'make_set'"):
        ctx.step("make_set", lambda: {1, 2})
    with pytest.raises(TypeError, match="'nan_step'"):
        ctx.step("nan_step", lambda: float("nan"))
    assert link.saved == []


def test_checkpoint_returns_when_nothing_is_flagged() -> None:
    ctx, link = make()
    link.interrupts[("some-other-execution", TOKEN)] = ("cancelled", None)
    assert ctx.checkpoint() is None
    assert ctx.cancelled is False


def test_checkpoint_on_shutdown() -> None:
    ctx, link = make()
    link.shutdown = True
    with pytest.raises(Interrupted) as info:
        ctx.checkpoint()
    assert info.value.reason == "shutdown"
    assert info.value.run_at is None


def test_checkpoint_with_interrupt_uses_its_reason() -> None:
    ctx, link = make()
    link.interrupts[(EXECUTION, TOKEN)] = ("window", 1_790_000_000.0)
    with pytest.raises(Interrupted) as info:
        ctx.checkpoint()
    assert info.value.reason == "window"
    assert info.value.run_at == 1_790_000_000.0
    assert ctx.cancelled is False


def test_interrupt_reason_wins_over_shutdown() -> None:
    ctx, link = make()
    link.shutdown = True
    link.interrupts[(EXECUTION, TOKEN)] = ("cancelled", None)
    with pytest.raises(Interrupted) as info:
        ctx.checkpoint()
    assert info.value.reason == "cancelled"


def test_cancelled_reflects_cancel_interrupt() -> None:
    ctx, link = make()
    assert ctx.cancelled is False
    link.interrupts[(EXECUTION, TOKEN)] = ("cancelled", None)
    assert ctx.cancelled is True


def test_new_step_checkpoints_before_running_fn() -> None:
    ctx, link = make()
    link.interrupts[(EXECUTION, TOKEN)] = ("cancelled", None)
    fn = CountingFn(1)
    with pytest.raises(Interrupted) as info:
        ctx.step("work", fn)
    assert info.value.reason == "cancelled"
    assert fn.calls == 0
    assert link.saved == []


def test_interrupted_is_not_an_exception() -> None:
    # User code doing `except Exception` must not swallow a release.
    assert not issubclass(Interrupted, Exception)


def test_async_step_awaits_coroutines_and_records_once() -> None:
    ctx, link = make(cls=AsyncContext)
    calls = 0

    async def fetch() -> dict[str, int]:
        nonlocal calls
        calls += 1
        return {"v": 3}

    async def scenario() -> None:
        assert await ctx.step("fetch", fetch) == {"v": 3}
        assert await ctx.step("fetch", fetch) == {"v": 3}
        assert await ctx.step("plain", lambda: [1]) == [1]

    asyncio.run(scenario())
    assert calls == 1
    assert [s[2] for s in link.saved] == ["fetch", "plain"]


def test_step_result_with_a_nul_character_is_refused_before_it_is_sent() -> None:
    ctx, link = make()
    with pytest.raises(ValueError, match=r"result of step 'nul' contains a NUL character"):
        ctx.step("nul", lambda: {"text": "a\x00b"})
    assert link.saved == []
    assert ctx.step("backslash", lambda: "a\\u0000b") == "a\\u0000b"  # not a NUL


def test_refused_step_save_fails_the_run_and_lost_lease_abandons_it() -> None:
    from conductor_worker.child import _checked
    from conductor_worker.errors import LeaseLost

    assert _checked(("1", ""), "7", "s") == "1"
    with pytest.raises(ValueError, match="step 's' was not recorded: result_json: bad"):
        _checked((None, "result_json: bad"), "7", "s")
    with pytest.raises(LeaseLost):
        _checked((None, ""), "7", "s")


class ExpiringLink(FakeLink):
    """A link whose worker has not had a heartbeat acknowledged for a while."""

    def __init__(self) -> None:
        super().__init__()
        self.renewed_until = 0.0
        self.waited = 0
        self.renew = False

    def wait_lease(self, key: tuple[str, str], valid: Any) -> None:
        self.waited += 1
        if self.renew:
            self.renewed_until = time.monotonic() + 60
            assert valid()
            return
        raise LeaseLost("lost")

    async def wait_lease_async(self, key: tuple[str, str], valid: Any) -> None:
        self.wait_lease(key, valid)


@pytest.mark.parametrize("renew", [True, False])
@pytest.mark.parametrize("cls", [Context, AsyncContext])
def test_no_step_function_starts_while_the_lease_may_have_expired(renew: bool, cls: Any) -> None:
    """A run whose lease may have expired (its worker has been cut off or frozen for a lease
    timeout) waits for a renewal before a step function starts, or stops if it is lost."""
    spec = RunSpec(execution_id=EXECUTION, token=TOKEN, task="unit-ctx", attempt=1,
                   max_attempts=3, payload_json="{}", steps={}, lease_seconds=10.0,
                   received_monotonic=time.monotonic() - 20)
    link = ExpiringLink()
    link.renew = renew
    ctx = cls(spec, link)
    fn = CountingFn(5)

    async def step() -> Any:
        return await ctx.step("s", fn)

    run = (lambda: asyncio.run(step())) if cls is AsyncContext else (lambda: ctx.step("s", fn))
    if renew:
        assert run() == 5 and fn.calls == 1
    else:
        with pytest.raises(LeaseLost):
            run()
        assert fn.calls == 0
    assert link.waited == 1
    if renew:  # recorded now: no second wait, no second call
        assert run() == 5
        assert link.waited == 1 and fn.calls == 1


def _windowed(coordinator_time: float, received: float) -> tuple[Any, FakeLink]:
    spec = RunSpec(
        execution_id=EXECUTION, token=TOKEN, task="unit-ctx", attempt=0, max_attempts=3,
        payload_json="{}", steps={}, coordinator_time=coordinator_time,
        received_monotonic=received, window_closes_at=1000.0, window_reopens_at=5000.0,
    )
    link = FakeLink()
    return Context(spec, link), link


def test_a_lease_that_arrived_late_does_not_make_the_window_close_late() -> None:
    """The lease's time was read when it was granted; if it spent 2 s in transit, the run's
    lease-based clock is 2 s behind. A heartbeat answer (coordinator time plus its round
    trip) bounds the clock from above, and the later reading wins."""
    received = time.monotonic()
    ctx, link = _windowed(coordinator_time=999.0, received=received)  # granted 2 s ago
    ctx.checkpoint()  # 999 + a little: open, by the lease alone
    link.clock_bound = (1001.0, received)  # the coordinator's clock is at most 1001 now
    with pytest.raises(Interrupted) as raised:
        ctx.checkpoint()
    assert (raised.value.reason, raised.value.run_at) == ("window", 5000.0)


def test_a_clock_jump_overrides_an_older_lease_reading() -> None:
    received = time.monotonic()
    ctx, link = _windowed(coordinator_time=999.0, received=received - 10)
    with pytest.raises(Interrupted):  # 999 + 10 s: closed
        ctx.checkpoint()
    link.clock_sync = (500.0, received)  # a test moved the clock back after the lease came
    ctx.checkpoint()
    link.clock_sync = (1000.0, received)
    with pytest.raises(Interrupted):
        ctx.checkpoint()
