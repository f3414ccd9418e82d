"""The fault scenarios, shared by the short versions in pytest and `python -m bench.faults`.

Each scenario starts coordinators and workers (every worker behind a fault proxy of its own),
runs steady load, injects its fault, keeps the load on for a while, stops it, waits for the
backlog to drain (up to a deadline) and counts (see checks.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from . import checks
from .cluster import ClusterError, Coordinator, LoadDriver, PostgresServer, Worker, wait_until
from .proxy import FaultProxy


@dataclass(frozen=True)
class Profile:
    """How hard and how long: the CI version and the long one."""

    name: str
    #: invokes per second
    rate: float
    #: the coordinators' --lease-timeout (workers heartbeat every third of it)
    lease_timeout: float
    #: seconds each of the five steps takes
    step_sleep: float
    #: seconds of load before the fault and after it ends
    before: float
    after: float
    #: faults "longer than the lease timeout" last this many lease timeouts
    long_hold: float
    #: how many short cuts (each a quarter of the lease timeout) in a row
    short_cuts: int
    #: how many long cuts in cut_long
    long_cut_rounds: int

    @property
    def latency(self) -> float:
        """An execution that is not finished this long after its invoke is backlog."""
        return 5 * self.step_sleep + 1.5

    @property
    def small_pool(self) -> tuple[int, int]:
        """A second worker that keeps up with only about 40% of the load on its own."""
        return (1, max(2, round(0.4 * self.rate * 5 * self.step_sleep)))

    @property
    def drain_deadline(self) -> float:
        """How long the backlog may take to drain once the load stops (a lost lease costs a
        lease timeout, a retry its backoff, a missed wake-up the dispatcher's 10 s sweep)."""
        return 2 * self.lease_timeout + 12.0


CI = Profile("ci", rate=20, lease_timeout=4.0, step_sleep=0.05, before=1.5, after=3.0,
             long_hold=1.75, short_cuts=4, long_cut_rounds=1)
LONG = Profile("long", rate=100, lease_timeout=5.0, step_sleep=0.1, before=5.0, after=15.0,
               long_hold=2.0, short_cuts=6, long_cut_rounds=2)


class Run:
    """One scenario's processes; everything stops on exit."""

    def __init__(self, pg: PostgresServer, url: str, profile: Profile, logs: Path) -> None:
        self.pg = pg
        self.url = url
        self.profile = profile
        self.logs = logs
        self.runs = logs / "runs"
        self.runs.mkdir(parents=True, exist_ok=True)
        self.coordinators: list[Coordinator] = []
        self.workers: list[Worker] = []
        self.proxies: list[FaultProxy] = []
        self.load: LoadDriver | None = None
        self.notes: list[str] = []

    def coordinator(self) -> Coordinator:
        n = len(self.coordinators)
        c = Coordinator(self.url, self.profile.lease_timeout, self.logs / f"coordinator-{n}.log")
        self.coordinators.append(c)
        return c.start()

    def worker(self, small: bool = False) -> Worker:
        """A worker behind a new proxy; with several coordinators, worker n prefers
        coordinator n (mod the count) and fails over to the others in order. A small one has
        the profile's small pool."""
        n = len(self.workers)
        addresses = [c.address for c in self.coordinators]
        k = n % len(addresses)
        proxy = FaultProxy(addresses[k:] + addresses[:k]).start()
        self.proxies.append(proxy)
        pool = self.profile.small_pool if small else (2, 32)
        w = Worker(f"w{n}", proxy, self.runs, self.logs / f"worker-{n}.log", pool)
        self.workers.append(w)
        w.wait_connected()
        return w

    def start_load(self) -> None:
        p = self.profile
        self.load = LoadDriver([c.address for c in self.coordinators], p.rate,
                               p.step_sleep).start()

    def succeeded(self) -> int:
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM conductor_executions WHERE state = 'succeeded'"
            ).fetchone()
        return int(row[0]) if row else 0

    def active(self) -> int:
        try:
            with psycopg.connect(self.url, autocommit=True, connect_timeout=2) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM conductor_executions"
                    " WHERE state IN ('pending', 'running')"
                ).fetchone()
        except psycopg.OperationalError:
            return -1
        return int(row[0]) if row else 0

    def drain(self) -> None:
        """Stop the load and wait (up to the deadline) until nothing is pending or running."""
        assert self.load is not None
        self.load.stop()
        deadline = time.monotonic() + self.profile.drain_deadline
        while time.monotonic() < deadline and self.active() != 0:
            time.sleep(0.2)

    def close(self) -> None:
        if self.load is not None:
            self.load.stop()
        for w in self.workers:
            w.stop()
        for c in self.coordinators:
            c.stop()
        for p in self.proxies:
            p.close()


#: a fault: inject it into a running scenario, return the wall time it ended
Fault = Callable[[Run], float]


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    fault: Fault
    workers: int = 2
    coordinators: int = 1
    #: whether the fault is one that must cost no attempt
    no_burn: bool = False
    #: whether the second worker is a small one: while the first is away a backlog builds,
    #: so that its expired executions are still waiting when it comes back (and may be
    #: leased to it again while their old runs are still in its pool)
    small_second: bool = False


@dataclass
class Outcome:
    scenario: Scenario
    profile: Profile
    counts: checks.Counts
    logs: Path
    notes: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[str]:
        c = self.counts
        found = [f"{name}={getattr(c, name)}" for name in
                 ("lost", "stuck", "rerun_after_recorded", "stale_writes", "burned_twice")
                 if getattr(c, name)]
        if self.scenario.no_burn and c.burned:
            found.append(f"burned={c.burned}")
        if c.invoked < self.profile.rate:
            found.append(f"the load did not run (only {c.invoked} invokes)")
        return found + self.notes

    @property
    def passed(self) -> bool:
        return not self.failures

    def report(self) -> str:
        examples = {k: v for k, v in self.counts.examples.items() if v}
        return (f"{self.scenario.name} ({self.profile.name}): "
                f"{', '.join(self.failures) or 'ok'}; counts {self.counts.as_dict()}"
                f"; examples {examples}; logs in {self.logs}")


# -- faults --------------------------------------------------------------------------------


def hold(seconds: float) -> None:
    """Keep a fault in place (the one kind of sleep the suite does)."""
    time.sleep(seconds)


def _worker_sigkill(run: Run) -> float:
    _busy(run, run.workers[0])
    run.workers[0].kill()
    ended = time.time()
    run.worker()  # its replacement, as a supervisor would start
    return ended


def _busiest_child(run: Run, worker: Worker) -> int:
    """The pool process of `worker` that started a step most recently."""
    children = set(worker.pool_children())

    def pick() -> int | None:
        recent = time.time() - 0.5
        for r in reversed(checks.recent_runs(run.runs)):
            if r["t"] < recent:
                break
            if r["pid"] in children:
                return int(r["pid"])
        return None

    return int(wait_until(pick, 30, f"a step run in a pool process of {worker.name}"))


def _busy(run: Run, worker: Worker) -> None:
    """Wait until `worker` is running steps (so that its fault hits work in flight)."""
    _busiest_child(run, worker)


def _pool_child_sigkill(run: Run) -> float:
    os.kill(_busiest_child(run, run.workers[0]), signal.SIGKILL)
    return time.time()


def _coordinator_restart(run: Run) -> float:
    c = run.coordinators[0]
    c.kill()
    hold(1.0)
    c.start()
    return time.time()


def _postgres_restart(mode: str) -> Fault:
    def fault(run: Run) -> float:
        run.pg.restart(mode)
        return time.time()

    return fault


def _reconnected(run: Run, worker: Worker, before: int) -> None:
    """Note (a failure) when the worker did not register again within 30 s."""
    try:
        worker.wait_connected(before + 1, timeout=30)
    except ClusterError as exc:
        run.notes.append(f"{worker.name} did not reconnect: {exc}")


def _cut_short(run: Run) -> float:
    w, proxy = run.workers[0], run.proxies[0]
    ended = time.time()
    for _ in range(run.profile.short_cuts):
        _busy(run, w)
        before, resets = w.connects(), proxy.resets
        proxy.cut()
        hold(run.profile.lease_timeout / 4)
        proxy.heal()
        ended = time.time()
        if proxy.resets == resets:
            raise ClusterError("the cut reset no connection (was the worker connected?)")
        _reconnected(run, w, before)
        hold(run.profile.lease_timeout / 2)
    return ended


def _cut_long(run: Run) -> float:
    """One long cut per round (the race it provokes in a broken worker is not hit every
    time; more rounds make a pass mean more), a lease timeout apart."""
    w, proxy = run.workers[0], run.proxies[0]
    ended = time.time()
    for n in range(run.profile.long_cut_rounds):
        if n:
            hold(run.profile.lease_timeout)
        _busy(run, w)
        before, resets = w.connects(), proxy.resets
        proxy.cut()
        hold(run.profile.long_hold * run.profile.lease_timeout)
        proxy.heal()
        ended = time.time()
        if proxy.resets == resets:
            raise ClusterError("the cut reset no connection (was the worker connected?)")
        _reconnected(run, w, before)
    return ended


def _stall_long(run: Run) -> float:
    proxy = run.proxies[0]
    _busy(run, run.workers[0])
    if proxy.connections == 0:
        raise ClusterError("nothing to stall: the worker has no open connection")
    proxy.stall()
    hold(run.profile.long_hold * run.profile.lease_timeout)
    proxy.heal()
    return time.time()


def _sigstop(run: Run) -> float:
    w = run.workers[0]
    _busy(run, w)
    w.signal_group(signal.SIGSTOP)
    try:
        hold(run.profile.long_hold * run.profile.lease_timeout)
    finally:
        w.signal_group(signal.SIGCONT)
    return time.time()


def _coordinator_killed(run: Run) -> float:
    w = run.workers[0]  # connected to coordinator 0 (its proxy prefers it)
    _busy(run, w)
    before = w.connects()
    run.coordinators[0].kill()
    ended = time.time()
    _reconnected(run, w, before)
    return ended


def _rolling_sigterm(run: Run) -> float:
    for w in list(run.workers):
        w.process.terminate()
        try:
            code = w.process.wait(60)
        except Exception as exc:
            raise ClusterError(f"{w.name} did not stop within 60 s of SIGTERM") from exc
        if code != 0:
            run.notes.append(f"{w.name} exited with {code} after SIGTERM (expected 0)")
        run.worker()
    return time.time()


SCENARIOS = [
    Scenario("worker_sigkill", "worker SIGKILL (and a replacement)", _worker_sigkill),
    Scenario("pool_child_sigkill", "pool child SIGKILL", _pool_child_sigkill),
    Scenario("coordinator_restart", "coordinator SIGKILL, restart after 1 s",
             _coordinator_restart),
    Scenario("postgres_restart_fast", "PostgreSQL restart -m fast", _postgres_restart("fast")),
    Scenario("postgres_restart_immediate", "PostgreSQL restart -m immediate",
             _postgres_restart("immediate")),
    Scenario("cut_short", "cuts of 1/4 lease timeout, one after another (one worker)",
             _cut_short, workers=1, no_burn=True),
    Scenario("cut_long", "cut past the lease timeout, second worker up, reconnect",
             _cut_long, small_second=True),
    Scenario("stall_long", "silent stall past the lease timeout, then bytes flow",
             _stall_long, small_second=True),
    Scenario("sigstop", "SIGSTOP of a worker past its lease timeout, then SIGCONT", _sigstop,
             small_second=True),
    Scenario("two_coordinators", "two coordinators, one SIGKILLed", _coordinator_killed,
             coordinators=2),
    Scenario("rolling_sigterm", "rolling SIGTERM of every worker (replaced one by one)",
             _rolling_sigterm, no_burn=True),
]

BY_NAME = {s.name: s for s in SCENARIOS}


# -- running -------------------------------------------------------------------------------


@contextlib.contextmanager
def postgres() -> Iterator[PostgresServer]:
    pg = PostgresServer()
    try:
        yield pg.start()
    finally:
        pg.stop()


def run_scenario(scenario: Scenario, profile: Profile, pg: PostgresServer,
                 logs: Path | None = None) -> Outcome:
    logs = logs or Path(tempfile.mkdtemp(prefix=f"faults-{scenario.name}-"))
    with pg.database() as url:
        run = Run(pg, url, profile, logs)
        try:
            for _ in range(scenario.coordinators):
                run.coordinator()
            for n in range(scenario.workers):
                run.worker(small=scenario.small_second and n == 1)
            run.start_load()
            wait_until(lambda: run.succeeded() >= profile.rate, 60, "the load to warm up", 0.2)
            hold(profile.before)
            fault_end = scenario.fault(run)
            hold(profile.after)
            run.drain()
            assert run.load is not None
            counts = checks.collect(url, run.runs, run.load.ids, run.load.errors, fault_end,
                                    profile.latency)
        finally:
            run.close()
    return Outcome(scenario, profile, counts, logs, run.notes)
