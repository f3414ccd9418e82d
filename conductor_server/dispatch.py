"""Leases: matching ready work to worker capacity, group-committed worker writes, expiry.

Dispatch is push-based. Whatever can make work ready (an invoke, a completion that frees a
slot, a retry or release whose time comes, a NOTIFY from another coordinator) marks the task
dirty and wakes one loop, which leases a batch per worker with free capacity in one statement
and pushes it down that worker's stream.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import logging
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timedelta

from .batcher import Batcher
from .clock import Clock, SystemClock
from .deadlines import Deadlines
from .loop_errors import log_failed_pass
from .metrics import CoordinatorMetrics
from .models import (
    ErrorInfo,
    Lease,
    LeaseRef,
    OutcomeApplied,
    OutcomeKind,
    OutcomeWrite,
    State,
    StepWrite,
    StepWriteResult,
    TaskDef,
    WorkerInfo,
)
from .sessions import (
    CancelRequest,
    ClockSync,
    Drained,
    HeartbeatAck,
    LeasingStopped,
    OutcomeAck,
    Session,
    StepAck,
    WindowRelease,
)
from .settings import Settings
from .store import Store
from .waiters import Waiters
from .windows import closes_at, next_opening

log = logging.getLogger(__name__)

SAFETY_SWEEP = timedelta(seconds=10)  # re-check every task now and then, whatever happened
DRAINED = Drained()
LEASING_STOPPED = LeasingStopped()
QUEUE_GAUGE_INTERVAL = 5.0  # seconds between queue depth refreshes
#: at most this share of the time goes to counting the queues: a count that takes long (a
#: backlog of a million rows takes 0.4-0.7 s on 2 cores) waits 1/QUEUE_GAUGE_SHARE times as
#: long before the next, so the gauges never cost leasing more than this
QUEUE_GAUGE_SHARE = 0.01
BATCH_WAIT = 0.002  # seconds a small lease round may wait for more room (real time)
#: seconds the prefetch waits, when work arrives after the queue ran dry, for idle pool
#: processes anywhere (other coordinators' workers too) to get the work first
PREFETCH_WAIT = 0.05
#: heartbeat intervals of silence after which no more leases go to a worker, and after which
#: its stream is closed (its leases stay valid until they expire or it reconnects)
SILENT_STOP_PUSHING = 1.5
SILENT_CLOSE = 2.0
#: the largest lease (payload plus recorded steps) sent to a worker: the Python worker receives
#: messages of up to 64 MiB (conductor_worker.connection.MAX_MESSAGE)
MAX_LEASE_BYTES = 48 * 1024 * 1024
#: the largest lease window a worker may ask for, per task
MAX_CAPACITY = 1_000_000
CLOCK_SYNC_TIMEOUT = 5.0
#: shortest wait before a rate-limited task that ran out of tokens is looked at again
RATE_WAKE_MIN = 0.02  # seconds a test clock's jump waits for workers to confirm it


def _not_written(_write: object, _error: Exception) -> None:
    return None


def gauge_pause(took: float | None) -> float:
    """Seconds until the next queue gauge refresh, after one that took `took` seconds (None:
    it failed, which says nothing of what a count costs: the database was away, say, and the
    time went into waiting for a connection, so the next try comes at the usual interval)."""
    if took is None:
        return QUEUE_GAUGE_INTERVAL
    return max(QUEUE_GAUGE_INTERVAL, took / QUEUE_GAUGE_SHARE)


class Dispatcher:
    """Owns worker sessions, leasing, worker writes and the lease reaper."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        settings: Settings,
        waiters: Waiters,
        metrics: CoordinatorMetrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics or CoordinatorMetrics()
        #: how workers see this coordinator (set by the app once the port is bound)
        self.name = "coordinator"
        #: monotonic time each lease was granted, for the run-time histogram
        self._granted: dict[int, float] = {}
        self.clock = clock
        self.settings = settings
        self.waiters = waiters
        self.sessions: dict[int, Session] = {}
        self.tasks: dict[str, TaskDef] = {}
        self._dirty: set[str] = set()
        #: future wake-ups, earliest first (every one is kept: retries, delays, releases and
        #: window openings each start on time), and the same as a set to skip repeats
        self._due: list[tuple[datetime, str]] = []
        self._due_set: set[tuple[datetime, str]] = set()
        self._window_due: datetime | None = None
        self._deferred: set[str] = set()
        #: tasks whose last lease round found every ready execution it asked for (the others
        #: have run dry, or were never leased: new work of theirs may be scarce)
        self._flowing: set[str] = set()
        #: time.monotonic() before which a task's leases go to idle pool processes only
        self._prefetch_after: dict[str, float] = {}
        self._waited: set[str] = set()
        #: rate buckets paused by RateLimited (some key of them, at least) until when
        self.pauses: dict[str, datetime] = {}
        self._wake = asyncio.Event()
        self._passes = 0
        self._in_pass = False
        self._pass_done = asyncio.Condition()
        self._loops: list[asyncio.Task[None]] = []
        self._loop_thread: threading.Thread | None = None
        self._served = 0  # lease rounds so far (Session.served orders workers fairly)
        self._clock_sequence = 0
        self._clock_waits: dict[tuple[int, int], asyncio.Future[None]] = {}
        # A write the database refuses on its own is answered as not applied (stale), so
        # that it fails neither its batch nor its stream (nor a reaper pass).
        self._steps: Batcher[StepWrite, StepWriteResult] = Batcher(
            "steps", self._flush_steps, on_item_error=_not_written
        )
        self._outcomes: Batcher[OutcomeWrite, OutcomeApplied | None] = Batcher(
            "outcomes", self._flush_outcomes, on_item_error=_not_written
        )
        # Leases measure worker liveness in real time, whatever the (injectable) clock says;
        # the clock drives scheduling: run times, backoff, windows, cron.
        self._real = SystemClock()
        self.deadlines = Deadlines(store, self._real, settings.timeout_grace)
        clock.subscribe(self._clock_jumped)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self._loop_thread = threading.current_thread()
        self._steps.start()
        self._outcomes.start()
        self._loops = [
            asyncio.create_task(self._lease_loop(), name="lease-loop"),
            asyncio.create_task(self._reaper_loop(), name="reaper"),
            asyncio.create_task(self._queue_gauges_loop(), name="queue-gauges"),
            asyncio.create_task(self._liveness_loop(), name="liveness"),
        ]

    async def stop(self) -> None:
        for session in list(self.sessions.values()):
            session.close()
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        await self._steps.stop()
        await self._outcomes.stop()

    def _lease_expiry(self) -> datetime:
        return self._real.now() + timedelta(seconds=self.settings.lease_timeout)

    def _clock_jumped(self) -> None:
        """The (test) clock jumped: wake everything, ask for the releases that the new time
        calls for before anything else runs, and hand the new time to every worker. Blocks
        the caller (a test moving time) until the workers confirm, so that a run's window
        boundary follows the jump exactly."""
        loop = self._loop_or_none()
        if loop is None or not loop.is_running():  # stopped: nothing to tell anyone
            return
        done = asyncio.run_coroutine_threadsafe(self._sync_clocks(), loop)
        if threading.current_thread() is not self._loop_thread:
            try:
                done.result(CLOCK_SYNC_TIMEOUT + 1)
            except Exception:
                log.warning("workers did not confirm the clock jump in time", exc_info=True)

    async def _sync_clocks(self) -> None:
        self.wake_all()
        now = self.clock.now()
        self._check_windows(now)
        waits = []
        for session in self.sessions.values():
            self._clock_sequence += 1
            future = asyncio.get_running_loop().create_future()
            self._clock_waits[(session.id, self._clock_sequence)] = future
            session.send(ClockSync(now, self._clock_sequence))
            waits.append(future)
        try:
            await asyncio.wait_for(asyncio.gather(*waits), CLOCK_SYNC_TIMEOUT)
        finally:
            for key, future in list(self._clock_waits.items()):
                if future in waits:
                    del self._clock_waits[key]

    def clock_synced(self, session: Session, sequence: int) -> None:
        """A worker uses the jumped clock now."""
        future = self._clock_waits.pop((session.id, sequence), None)
        if future is not None and not future.done():
            future.set_result(None)

    def _loop_or_none(self) -> asyncio.AbstractEventLoop | None:
        return self._loops[0].get_loop() if self._loops else None

    # -- waking -------------------------------------------------------------------------

    def wake(self, task: str, at: datetime | None = None) -> None:
        """Work of `task` may be ready now (or at `at`)."""
        if at is not None and at > self.clock.now():
            entry = (at, task)
            if entry not in self._due_set:
                self._due_set.add(entry)
                heapq.heappush(self._due, entry)
                if self._due[0] is entry:  # the earliest now: the loop's sleep is shorter
                    self._wake.set()
            return
        self._dirty.add(task)
        self._wake.set()

    def wake_all(self) -> None:
        self._dirty.update(self.tasks)
        self._wake.set()

    # -- task definitions ---------------------------------------------------------------

    async def task_def(self, name: str) -> TaskDef | None:
        """A task's definition, from this coordinator's cache or the database."""
        found = self.tasks.get(name)
        if found is None:
            found = await self.store.get_task(name)
            if found is not None:
                self.tasks[name] = found
        return found

    # -- sessions -----------------------------------------------------------------------

    async def connect(
        self,
        session: Session,
        held: Sequence[LeaseRef],
        before_visible: Callable[[], Awaitable[None]] | None = None,
    ) -> list[LeaseRef]:
        """Register a worker stream; returns the held leases that are no longer valid.

        All or nothing: every write (tasks, `before_visible`, held leases, the worker row)
        comes first; only then is the session visible to leasing, with no await in between,
        so a failed or cancelled registration leaves no session behind.

        A worker that reconnects replaces its old stream here (which may not have noticed
        yet that it is dead), and leases granted to it that it does not hold were pushed into
        a stream it never read: they are given back without counting an attempt."""
        now = self.clock.now()
        for old in list(self.sessions.values()):
            if old.worker_id == session.worker_id:  # given up by the worker: lease no more
                old.close()
        await self.store.upsert_tasks(session.tasks.values(), now)
        if before_visible is not None:
            await before_visible()
        expiry = self._lease_expiry()
        valid = await self.store.renew_leases(held, expiry, session.worker_id)
        session.renewed(expiry)
        tokens = {ref.execution_id: ref.token for ref in held}
        for execution_id, (task, _) in valid.items():
            session.hold(execution_id, task, tokens[execution_id])
        # whether a re-held lease is timed is not known here: the deadline query checks
        # (see deadlines.py; costs a statement per run-state report until they end)
        session.timed.update(valid)
        await self._release_unclaimed(session, {ref.execution_id for ref in held})
        await self.store.upsert_worker(self._worker_info(session))
        next_runs = {name: await self.store.next_run_at(name) for name in session.tasks}
        self.tasks.update(session.tasks)
        self._push_cancels(session, valid)
        self.sessions[session.id] = session
        self.metrics.workers_connected.set(len(self.sessions))
        for name, next_at in next_runs.items():
            self.wake(name, next_at)
        return [ref for ref in held if ref.execution_id not in valid]

    async def _release_unclaimed(self, session: Session, claimed: set[int]) -> None:
        mine = await self.store.leases_of_worker(session.worker_id)
        unclaimed = [lease for lease in mine if lease[0].execution_id not in claimed]
        if not unclaimed:
            return
        writes = [OutcomeWrite(ref, OutcomeKind.RELEASED, reason="unclaimed")
                  for ref, _ in unclaimed]
        await self._outcomes.submit_all(writes)
        for _, task in unclaimed:
            self.metrics.leases_unclaimed.labels(task).inc()
        log.info("worker %s never received %d leases; given back without an attempt",
                 session.worker_id, len(unclaimed))

    def _worker_info(self, session: Session) -> WorkerInfo:
        now = self._real.now()
        return WorkerInfo(
            session.worker_id, session.hostname, session.pid, tuple(sorted(session.tasks)),
            len(session.inflight), now, now, self.name, sum(session.capacity.values()),
            session.queues,
        )

    async def disconnect(self, session: Session) -> None:
        """The stream ended; its leases stay valid until they expire or the worker returns."""
        for key, future in list(self._clock_waits.items()):
            if key[0] == session.id:  # a closed stream confirms nothing: stop waiting for it
                del self._clock_waits[key]
                future.set_result(None)
        if self.sessions.pop(session.id, None) is not None:
            self.metrics.workers_connected.set(len(self.sessions))
            await self._mark_unstarted(session)
            await self.store.disconnect_worker(session.worker_id, self.name, self._real.now())

    async def _mark_unstarted(self, session: Session) -> None:
        """Record which leases of an ended stream had not started, so that they return
        without an attempt if the worker does not come back before they expire. Best
        effort: unrecorded, they count an attempt as any lost lease does."""
        refs = [LeaseRef(eid, token) for eid, token in session.waiting.items()]
        if not refs or session.renewed_until is None:
            return
        try:
            await self.store.mark_unstarted(refs, session.worker_id, session.renewed_until)
        except Exception:
            log_failed_pass(log, "recording the unstarted leases of worker %s failed",
                            session.worker_id)

    def set_capacity(self, session: Session, items: Iterable[tuple[str, int]]) -> None:
        """A worker resizes its lease window of some tasks (adaptive prefetch)."""
        for task, capacity in items:
            if task not in session.capacity or not 1 <= capacity <= MAX_CAPACITY:
                log.warning("worker %s: ignored capacity %r for %r", session.worker_id,
                            capacity, task[:200])
                continue
            grew = capacity > session.capacity[task]
            session.capacity[task] = capacity
            if grew:
                self.wake(task)

    def stop_leasing(self, session: Session) -> None:
        """No more leases for this stream; the answer follows every lease already sent (a
        lease query in progress gives its leases back: see _lease)."""
        session.leasing = False
        session.send(LEASING_STOPPED)

    async def heartbeat(self, session: Session, refs: Sequence[LeaseRef]) -> None:
        """Renew the worker's leases and answer: the ack tells it the stream is alive, and
        which of the leases it listed are gone (so their runs stop at their next step)."""
        expiry = self._lease_expiry()
        valid = await self.store.renew_leases(refs, expiry, session.worker_id)
        session.renewed(expiry)
        lost = []
        for ref in refs:
            if ref.execution_id not in valid:
                lost.append(ref)
                self._forget(session, ref.execution_id, ref.token)
        session.send(HeartbeatAck(self.clock.now(), lost))
        self._push_cancels(session, valid)
        await self.store.touch_worker(session.worker_id, len(session.inflight), self._real.now())

    def _push_cancels(self, session: Session, leases: dict[int, tuple[str, bool]]) -> None:
        """Repeat cancellation requests the worker may have missed (e.g. while reconnecting)."""
        cancelled = [eid for eid, (_, cancel) in leases.items() if cancel]
        if cancelled:
            session.send(CancelRequest(cancelled))

    # -- worker writes ------------------------------------------------------------------

    async def save_steps(self, session: Session, writes: list[StepWrite]) -> None:
        results = await self._steps.submit_all(writes)
        session.send(
            [StepAck(str(w[0]), w[2], r, token=w[1]) for w, r in zip(writes, results, strict=True)]
        )
        saved: Counter[str] = Counter()
        inflight = session.inflight
        for w, r in zip(writes, results, strict=True):
            if r is not None:
                saved[inflight.get(w.execution_id, "")] += 1
            else:
                self._forget(session, w.execution_id, w.token)
        for task, count in saved.items():
            self.metrics.labelled(self.metrics.steps_saved, task).inc(count)

    async def apply_outcomes(self, session: Session, writes: list[OutcomeWrite]) -> None:
        results = await self._outcomes.submit_all(writes)
        session.send(
            [
                OutcomeAck(w.lease, True, r.state.value, r.run_at) if r is not None
                else OutcomeAck(w.lease, False, "", None)
                for w, r in zip(writes, results, strict=True)
            ]
        )
        for w in writes:
            self._forget(session, w.lease.execution_id, w.lease.token)

    def _forget(self, session: Session, execution_id: int, token: str) -> None:
        task = session.drop(execution_id, token)
        if task is not None:
            self.wake(task)

    async def _flush_steps(self, writes: list[StepWrite]) -> list[StepWriteResult]:
        return await self.store.save_steps(writes, self.clock.now(), self._real.now())

    async def _flush_outcomes(self, writes: list[OutcomeWrite]) -> list[OutcomeApplied | None]:
        results = await self.store.apply_outcomes(writes, self.clock.now(), self._real.now())
        await self._record_pauses(writes, results)
        self._after_outcomes(r for r in results if r is not None)
        for write, result in zip(writes, results, strict=True):
            if result is not None and result.task:
                self._count_outcome(write, result)
        return results

    def _count_outcome(self, write: OutcomeWrite, result: OutcomeApplied) -> None:
        m, task = self.metrics, result.task
        granted = self._granted.pop(write.lease.execution_id, None)
        if granted is not None:
            m.labelled(m.run_time, task).observe(time.monotonic() - granted)
        if write.lost:
            m.labelled(m.leases_expired, task).inc()
        if write.kind is OutcomeKind.RELEASED:
            outcome = "released" if result.state is State.PENDING else result.state.value
            m.labelled(m.checkpoint_releases, task, write.reason or "unspecified").inc()
        elif result.state is State.PENDING:
            outcome = "retried"
        else:
            outcome = result.state.value
        m.labelled(m.executions_finished, task, outcome).inc()

    def _after_outcomes(self, applied: Iterable[OutcomeApplied]) -> None:
        finished = []
        for outcome in applied:
            if outcome.state.finished:
                finished.append(outcome.execution_id)
            elif outcome.task:
                self.wake(outcome.task, outcome.run_at)
        self.waiters.finished(finished)

    # -- leasing ------------------------------------------------------------------------

    async def _lease_loop(self) -> None:
        while True:
            await self._sleep_until_due()
            self._wake.clear()
            self._in_pass = True
            try:
                await self._one_pass(self.clock.now())
            finally:
                self._in_pass = False
                async with self._pass_done:
                    self._passes += 1
                    self._pass_done.notify_all()

    async def _one_pass(self, now: datetime) -> None:
        while self._due and self._due[0][0] <= now:
            entry = heapq.heappop(self._due)
            self._due_set.discard(entry)
            self._dirty.add(entry[1])
        # Releases first: a window that closed must not wait for a leasing pass.
        self._check_windows(now)
        for task in list(self._dirty):
            # Taken off before the query: a wake() arriving while it runs puts it back.
            self._dirty.discard(task)
            try:
                if await self._lease_task(task, self.clock.now()):
                    self._dirty.add(task)
            except Exception:
                log_failed_pass(log, "leasing %s failed; retrying shortly", task)
                self.wake(task, self.clock.now() + timedelta(seconds=1))
        now = self.clock.now()
        self._check_windows(now)
        try:
            await self._check_drains(now)
        except Exception:
            log_failed_pass(log, "drain check failed")

    async def settle(self) -> None:
        """Wait until the lease loop has run a full pass that began after this call (tests)."""
        async with self._pass_done:
            target = self._passes + (2 if self._in_pass else 1)
            self.wake_all()
            await self._pass_done.wait_for(lambda: self._passes >= target)

    async def _sleep_until_due(self) -> None:
        if self._dirty:
            return
        now = self.clock.now()
        windows = [self._window_due] if self._window_due else []
        due = [self._due[0][0]] if self._due else []
        until = min([*due, *windows, now + SAFETY_SWEEP])
        timeout = max(0.0, (until - now).total_seconds())
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            if until == now + SAFETY_SWEEP:
                self.wake_all()

    async def _lease_task(self, task: str, now: datetime) -> bool:
        """Lease ready work of `task` to workers with room; True if more may be ready."""
        definition = self.tasks.get(task)
        candidates = [s for s in self.sessions.values() if s.free(task) > 0]
        if definition is None or not candidates:
            return False
        waited = task in self._waited
        self._waited.discard(task)
        takers = candidates if waited else [s for s in candidates if s.wants(task)]
        if not takers:  # only a little room: wait a moment so that a larger batch forms
            self._defer(task)
            return False
        opening = next_opening(definition, now)
        if opening is not None:  # outside its window: come back when it opens
            self.wake(task, opening)
            return False
        room = await self._concurrency_room(definition)
        capped = definition.concurrency > 0
        # Fair: the workers with the most room first (least recently served among equals),
        # and limited room shared out among them rather than given to the first.
        takers.sort(key=lambda s: (-s.free(task) / max(1, s.capacity[task]), s.served))
        if definition.limited or self.paused(definition, now):
            # Short lease rounds are the rule here (keys full, no tokens), not a sign that the
            # queue ran dry, so no prefetch wait: idle pool processes first (so that one
            # worker's prefetch does not hold the few keys free while others idle), then
            # the prefetch, in the same pass.
            if await self._lease_round(task, takers, room, now, Session.idle, capped):
                await self._lease_round(task, takers, room, now, Session.free, capped)
            return False
        if task not in self._flowing:
            # New work after the queue ran dry: it may be scarce, so idle pool processes
            # come first, on every worker of every coordinator; the prefetch (leases beyond
            # one per process) waits PREFETCH_WAIT, long enough for the other coordinators
            # (woken by NOTIFY) to fill their idle processes first.
            if await self._lease_round(task, takers, room, now, Session.idle, capped):
                self._flowing.add(task)
                self._prefetch_after[task] = time.monotonic() + PREFETCH_WAIT
                asyncio.get_running_loop().call_later(PREFETCH_WAIT, self._undefer, task)
            return False
        if time.monotonic() < self._prefetch_after.get(task, 0.0):  # (woken when it ends)
            await self._lease_round(task, takers, room, now, Session.idle, capped)
            return False
        return await self._lease_round(task, takers, room, now, Session.free, capped)

    async def _lease_round(
        self, task: str, takers: list[Session], room: int, now: datetime,
        limit: Callable[[Session, str], int], capped: bool,
    ) -> bool:
        """Lease to each taker in turn up to `limit` of it (and its share of the room);
        returns whether more may be ready (not once the queue ran dry, nor once a capped
        task's room is used up: its next run waits for one to end)."""
        more = True
        for i, session in enumerate(takers):
            share = -(-room // (len(takers) - i))  # ceil: what is left, split evenly
            want = min(limit(session, task), self.settings.lease_batch_size, share)
            if want <= 0:
                continue
            leases = await self._lease(session, task, want, now)
            room -= len(leases)
            if len(leases) < want:
                if session.queues is None:
                    self._flowing.discard(task)
                    return False
                more = False  # its queues ran dry, not necessarily the task
        # An uncapped task's room is only this pass's share-out (a batch per worker): using
        # it up says nothing about the queue, so the next pass goes on leasing.
        return more and (room > 0 or not capped)

    def paused(self, definition: TaskDef, now: datetime) -> bool:
        """Whether a RateLimited pause may hold some of the task's work now."""
        until = self.pauses.get(definition.bucket)
        if until is None:
            return False
        if until <= now:
            del self.pauses[definition.bucket]
            return False
        return True

    def _wake_for_tokens(self, definition: TaskDef, now: datetime, paused: bool) -> None:
        """A rate-limited (or paused) task got fewer leases than asked: look again when the
        next token comes (or the pause ends), since nothing else would wake it then."""
        until = self.pauses.get(definition.bucket)
        if paused and until is not None:
            self.wake(definition.name, until)
        if definition.rate_count > 0:
            step = max(RATE_WAKE_MIN, definition.rate_period / definition.rate_count)
            self.wake(definition.name, now + timedelta(seconds=step))

    async def refresh_pauses(self) -> None:
        """Read the RateLimited pauses in force (another coordinator set one, or at start),
        and wake their tasks when they end."""
        now = self.clock.now()
        pauses: dict[str, datetime] = {}
        for bucket, _key, until in await self.store.active_pauses(now):
            pauses[bucket] = max(until, pauses.get(bucket, until))
        self.pauses = pauses
        for definition in self.tasks.values():
            if definition.bucket in pauses:
                self.wake(definition.name, pauses[definition.bucket])

    async def _record_pauses(self, writes: Sequence[OutcomeWrite],
                             results: Sequence[OutcomeApplied | None]) -> None:
        pauses = [
            (w.lease.execution_id, w.run_at) for w, r in zip(writes, results, strict=True)
            if r is not None and w.reason == "rate_limited" and w.run_at is not None
        ]
        if not pauses:
            return
        try:
            await self.store.pause_buckets(pauses, self.clock.now())
            await self.refresh_pauses()
        except Exception:
            log_failed_pass(log, "recording a RateLimited pause failed")

    def _defer(self, task: str) -> None:
        if task not in self._deferred:
            self._deferred.add(task)
            asyncio.get_running_loop().call_later(BATCH_WAIT, self._undefer, task)

    def _undefer(self, task: str) -> None:
        self._deferred.discard(task)
        self._waited.add(task)  # the next round leases whatever room there is
        self.wake(task)

    async def _concurrency_room(self, definition: TaskDef) -> int:
        """How many more may run: a cheap first look that saves lease queries when a capped
        task is full. The lease statement itself enforces the cap (see Store.lease)."""
        if definition.concurrency <= 0:
            return self.settings.lease_batch_size * max(1, len(self.sessions))
        return definition.concurrency - await self.store.running_count(definition.name)

    async def _lease(self, session: Session, task: str, want: int, now: datetime) -> list[Lease]:
        definition = self.tasks.get(task)
        cap = definition.concurrency if definition is not None else 0
        expiry = self._lease_expiry()
        paused = definition is not None and self.paused(definition, now)
        leases = await self.store.lease(
            task, want, session.worker_id, now, expiry, cap, session.queues, definition, paused,
            lease_now=self._real.now(),
            task_timeout=definition.timeout if definition is not None else None,
            timeout_grace=self.settings.timeout_grace)
        if definition is not None and len(leases) < want:
            self._wake_for_tokens(definition, now, paused)
        if not leases:
            return leases
        session.renewed(expiry)
        self._served += 1
        session.served = self._served
        if session.id not in self.sessions or not session.leasing:
            # the stream closed, or the worker asked for no more leases, meanwhile: give them
            # back (no attempt counted)
            await self._release_unsent(leases)
            return []
        if any(lease.size() > MAX_LEASE_BYTES for lease in leases):
            leases = await self._fail_undeliverable(leases)
            self.wake(task)  # their room is free again: the next pass fills it
            if not leases:
                return leases
        if definition is not None and definition.window_start:
            leases = _with_window(leases, definition, now)
        started = time.monotonic()
        observe = self.metrics.labelled(self.metrics.dispatch_latency, task).observe
        for lease in leases:
            session.hold(lease.execution_id, task, lease.token)
            if lease.timeout:
                session.timed.add(lease.execution_id)
            self._granted[lease.execution_id] = started
            if lease.ready_at is not None:
                latency = (now - lease.ready_at).total_seconds()
                observe(max(0.0, latency))
        self.metrics.labelled(self.metrics.executions_started, task).inc(len(leases))
        session.send(leases)
        return leases

    async def _fail_undeliverable(self, leases: list[Lease]) -> list[Lease]:
        """Fail, for good, executions too large for any worker to receive (their payload and
        recorded steps), instead of pushing a message that would break the stream; returns
        the others."""
        writes = [
            OutcomeWrite(
                LeaseRef(lease.execution_id, lease.token), OutcomeKind.FAILED, retryable=False,
                error=ErrorInfo("LeaseTooLarge", f"payload and recorded steps take about"
                                f" {lease.size()} bytes; a worker receives at most"
                                f" {MAX_LEASE_BYTES} (see --max-steps-bytes)"),
            )
            for lease in leases if lease.size() > MAX_LEASE_BYTES
        ]
        await self._outcomes.submit_all(writes)
        log.error("failed %d executions too large to lease", len(writes))
        return [lease for lease in leases if lease.size() <= MAX_LEASE_BYTES]

    async def _release_unsent(self, leases: list[Lease]) -> None:
        writes = [
            OutcomeWrite(LeaseRef(lease.execution_id, lease.token), OutcomeKind.RELEASED)
            for lease in leases
        ]
        await self._outcomes.submit_all(writes)

    # -- liveness -----------------------------------------------------------------------

    async def _liveness_loop(self) -> None:
        interval = self.settings.heartbeat_interval
        while True:
            await asyncio.sleep(interval / 4)
            self.check_liveness(time.monotonic())

    def check_liveness(self, now: float) -> None:
        """Stop pushing leases to workers silent for 1.5 heartbeat intervals (every worker
        heartbeats each interval); close the streams of those silent for two. Their leases
        stay valid until they expire, so a worker that comes back in time loses nothing."""
        interval = self.settings.heartbeat_interval
        for session in list(self.sessions.values()):
            silent = now - session.last_heard
            if silent > SILENT_CLOSE * interval and not session.closed:
                log.warning("worker %s silent for %.1fs: closing its stream",
                            session.worker_id, silent)
                self.metrics.streams_silent.inc()
                session.close()
            elif silent > SILENT_STOP_PUSHING * interval:
                session.silent = True

    # -- windows and drain mode -----------------------------------------------------------

    def _check_windows(self, now: datetime) -> None:
        """Ask workers to release running executions whose task's window has closed, and
        note when the next open window closes."""
        self._window_due = None
        windowed = {name: d for name, d in self.tasks.items() if d.window_start}
        if not windowed:
            return
        for session in self.sessions.values():
            releases: dict[datetime, list[int]] = {}
            for execution_id, task in session.inflight.items():
                definition = windowed.get(task)
                if definition is None or execution_id in session.release_requested:
                    continue
                opening = next_opening(definition, now)
                if opening is None:
                    closes = closes_at(definition, now)
                    if closes is not None:
                        self._window_due = min(closes, self._window_due or closes)
                    continue
                releases.setdefault(opening, []).append(execution_id)
            for opening, ids in releases.items():
                session.release_requested.update(ids)
                session.send(WindowRelease(ids, opening))
                log.info("window closed: releasing %d executions until %s", len(ids), opening)

    async def _check_drains(self, now: datetime) -> None:
        for session in list(self.sessions.values()):
            if not session.drain or session.drained or session.inflight:
                continue
            runnable = [
                name for name, d in session.tasks.items() if next_opening(d, now) is None
            ]
            if not runnable or not await self.store.ready_exists(runnable, now):
                session.drained = True
                session.leasing = False  # the worker stops now: a lease would be lost
                session.send(DRAINED)

    async def _queue_gauges_loop(self) -> None:
        while True:
            began = time.monotonic()
            took: float | None = None
            try:
                await self.refresh_queue_gauges()
                took = time.monotonic() - began
                self.metrics.queue_stats_seconds.set(took)
            except Exception:
                log_failed_pass(log, "queue metrics refresh failed")
            await asyncio.sleep(gauge_pause(took))

    async def refresh_queue_gauges(self) -> None:
        now = self.clock.now()
        seen_after = self._real.now() - timedelta(seconds=2 * self.settings.lease_timeout)
        for stats in await self.store.queue_stats(now, seen_after):
            self.metrics.queue_depth.labels(stats.task).set(stats.ready)
            self.metrics.queue_waiting.labels(stats.task).set(stats.waiting)
            age = (now - stats.oldest_ready_at).total_seconds() if stats.oldest_ready_at else 0
            self.metrics.queue_oldest_age.labels(stats.task).set(max(0.0, age))

    # -- expiry -------------------------------------------------------------------------

    async def _reaper_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reaper_interval)
            try:
                await self.reap()
            except Exception:
                log_failed_pass(log, "lease reaper failed; retrying")

    async def reap(self) -> int:
        """Fail attempts whose lease expired (error: worker lost), or give them back without
        an attempt when the worker never started them; returns how many."""
        expired = await self.store.expired_leases(self._real.now())
        if not expired:
            return 0
        unstarted = [ref for ref, never_started, _ in expired if never_started]
        returned = await self.store.return_unstarted(
            unstarted, self.clock.now(), self._real.now())
        self._after_outcomes(returned)
        for applied in returned:
            self.metrics.leases_returned_unstarted.labels(applied.task).inc()
        done = {applied.execution_id for applied in returned}
        lost = ErrorInfo("WorkerLost", "worker lost: lease expired without a heartbeat")
        timed_out = ErrorInfo("Timeout", "execution timeout: the attempt was still running"
                              f" {self.settings.timeout_grace:g}s after its timeout ran out")
        writes = [OutcomeWrite(ref, OutcomeKind.FAILED, error=timed_out if late else lost,
                               lost=True)
                  for ref, _, late in expired if ref.execution_id not in done]
        results = await self._outcomes.submit_all(writes)
        # (a worker still running a timed-out one hears at its next heartbeat that the lease
        # is lost; its writes are refused already)
        for session in self.sessions.values():
            for ref, _, _ in expired:
                session.drop(ref.execution_id, ref.token)
        reaped = [r for r in results if r is not None]
        if reaped:
            log.warning("reaped %d expired leases", len(reaped))
        if returned:
            log.warning("gave back %d expired leases that never started, without an attempt",
                        len(returned))
        return len(reaped) + len(returned)

    def cancel_running(self, execution_id: int) -> None:
        """Tell whichever connected worker runs the execution to stop it."""
        for session in self.sessions.values():
            if execution_id in session.inflight:
                session.send(CancelRequest([execution_id]))


def _with_window(leases: list[Lease], definition: TaskDef, now: datetime) -> list[Lease]:
    """Tell each run when its window closes, so that it lets go at its first step or
    checkpoint after that instant without waiting for the coordinator to ask."""
    closes = closes_at(definition, now)
    if closes is None:
        return leases
    reopens = next_opening(definition, closes)
    return [
        dataclasses.replace(lease, window_closes_at=closes, window_reopens_at=reopens)
        for lease in leases
    ]
