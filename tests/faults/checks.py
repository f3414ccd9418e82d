"""What the fault suite counts after a scenario, from the database and the run records.

- lost: invoked executions missing from the database, plus executions that ended failed or
  cancelled (the handlers never raise and nobody cancels, so only the system can fail them);
- stuck: executions still pending or running once the load has drained (past a deadline);
- rerun_after_recorded: step-function runs that started after that step's row was committed
  (the commit time is PostgreSQL's commit timestamp of the row's transaction);
- rerun_unacked: further runs of a step that started before it was recorded (allowed: the
  first run's save had not been acknowledged yet), or of a step never recorded;
- stale_writes: recorded writes a non-current lease made: a step row written by a lease that
  a later lease of the execution had already superseded (that lease's handler had started
  before the commit), a row no recorded run produced, a completion by a superseded lease, or
  a result whose step values differ from the recorded rows;
- burned: attempts spent beyond the first (attempt - 1 of a finished execution; all of them
  for one that failed: the handler never raises);
- burned_twice: executions that lost more than one attempt to the scenario's one fault (a lease
  held when the fault began may expire once; losing another means it was given to a worker
  that could not run it, e.g. pushed into a stream already dead, or lost on a worker that
  was connected and heartbeating);
- recover_s: from the end of the fault until the backlog drained for good: the last moment an
  execution was still unfinished `latency` seconds after its invoke (None: some never
  finished).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from .tasks import RUNS_FILE

FINAL = ("succeeded", "failed", "cancelled")


@dataclass
class Counts:
    executions: int = 0
    invoked: int = 0
    invoke_errors: int = 0
    step_runs: int = 0
    lost: int = 0
    stuck: int = 0
    rerun_after_recorded: int = 0
    rerun_unacked: int = 0
    stale_writes: int = 0
    burned: int = 0
    burned_twice: int = 0
    recover_s: float | None = None
    #: a few example ids per count, for the failure message
    examples: dict[str, list[str]] = field(default_factory=dict)

    def note(self, what: str, execution_id: Any) -> None:
        found = self.examples.setdefault(what, [])
        if len(found) < 5:
            found.append(str(execution_id))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Lease:
    token: str
    attempt: int
    first: float  # wall time of its first record (it existed by then)

    def order(self) -> tuple[int, float]:
        return (self.attempt, self.first)


def read_runs(runs_dir: Path) -> list[dict[str, Any]]:
    path = runs_dir / RUNS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def recent_runs(runs_dir: Path, tail: int = 64 * 1024) -> list[dict[str, Any]]:
    """The last records (about `tail` bytes' worth), oldest first."""
    path = runs_dir / RUNS_FILE
    if not path.exists():
        return []
    start = max(0, path.stat().st_size - tail)
    with path.open("rb") as f:
        f.seek(start)
        lines = f.read().decode().splitlines()[1 if start else 0:]  # the first may be cut
    return [json.loads(line) for line in lines if line]


def _ts(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def collect(url: str, runs_dir: Path, invoked: Sequence[str], invoke_errors: int,
            fault_end: float, latency: float) -> Counts:
    """Every count for one scenario (call once the load has drained or the deadline passed).

    The database is read before the run records: a run is recorded before its result is
    saved, so every row read has its run in the records even if workers are still busy."""
    with psycopg.connect(url, autocommit=True) as conn:
        executions = conn.execute(
            "SELECT id::text, state::text, attempt, result::text, worker_id,"
            " created_at, finished_at FROM conductor_executions"
        ).fetchall()
        steps = conn.execute(
            "SELECT execution_id::text, name, result::text, pg_xact_commit_timestamp(xmin)"
            " FROM conductor_steps"
        ).fetchall()
    if any(at is None for *_, at in steps):
        raise RuntimeError("a step row has no commit timestamp: is track_commit_timestamp on?")
    runs = read_runs(runs_dir)
    _dump(runs_dir / "database.json", executions, steps)
    counts = Counts(executions=len(executions), invoked=len(invoked),
                    invoke_errors=invoke_errors, step_runs=sum(r["k"] == "step" for r in runs))
    _count_outcomes(counts, executions, invoked)
    recorded = {(e, name): (json.loads(result), _ts(at)) for e, name, result, at in steps}
    _count_reruns(counts, runs, recorded)
    leases = _leases(runs)
    _count_stale(counts, runs, recorded, leases, executions)
    counts.recover_s = recovery(
        [(_ts(created) or 0.0, _ts(finished)) for *_, created, finished in executions],
        fault_end, latency)
    return counts


def _dump(path: Path, executions: Sequence[Sequence[Any]], steps: Sequence[Sequence[Any]]) -> None:
    """What the database held, beside the run records (for a look after a failure)."""
    with path.open("w") as f:
        for row in executions:
            f.write(json.dumps({"execution": [str(v) for v in row]}) + "\n")
        for row in steps:
            f.write(json.dumps({"step": [str(v) for v in row]}) + "\n")


def _count_outcomes(counts: Counts, executions: Iterable[Sequence[Any]],
                    invoked: Sequence[str]) -> None:
    present = set()
    for eid, state, attempt, _result, worker, *_ in executions:
        present.add(eid)
        if state in ("failed", "cancelled"):
            counts.lost += 1
            counts.note("lost", eid)
        elif state not in FINAL:
            counts.stuck += 1
            counts.note("stuck", f"{eid}:{state}:attempt {attempt}:{worker}")
        spent = attempt if state == "failed" else max(attempt - 1, 0)
        counts.burned += spent
        if spent:
            counts.note("burned", eid)
        if spent > 1:
            counts.burned_twice += 1
            counts.note("burned_twice", f"{eid}:{state}:attempt {attempt}")
    for eid in invoked:
        if eid not in present:
            counts.lost += 1
            counts.note("lost", eid)


def _count_reruns(counts: Counts, runs: Iterable[dict[str, Any]],
                  recorded: dict[tuple[str, str], tuple[Any, float | None]]) -> None:
    before: dict[tuple[str, str], int] = defaultdict(int)
    for run in runs:
        if run["k"] != "step":
            continue
        key = (run["e"], run["s"])
        committed = recorded[key][1] if key in recorded else None
        if committed is not None and run["t"] > committed:
            counts.rerun_after_recorded += 1
            counts.note("rerun_after_recorded", f"{run['e']}/{run['s']}")
        else:
            before[key] += 1
    counts.rerun_unacked = sum(n - 1 for n in before.values() if n > 1)


def _leases(runs: Iterable[dict[str, Any]]) -> dict[str, dict[str, Lease]]:
    """Per execution, every lease seen in the records, by token."""
    leases: dict[str, dict[str, Lease]] = defaultdict(dict)
    for run in runs:
        seen = leases[run["e"]].get(run["tok"])
        if seen is None or run["t"] < seen.first:
            leases[run["e"]][run["tok"]] = Lease(run["tok"], run["a"], run["t"])
    return leases


def superseded(leases: dict[str, Lease], token: str, at: float) -> bool:
    """Whether a later lease than `token` existed (had started a run) before `at`."""
    mine = leases.get(token)
    if mine is None:
        return True
    return any(o.order() > mine.order() and o.first < at for o in leases.values())


def _count_stale(counts: Counts, runs: Iterable[dict[str, Any]],
                 recorded: dict[tuple[str, str], tuple[Any, float | None]],
                 leases: dict[str, dict[str, Lease]],
                 executions: Iterable[Sequence[Any]]) -> None:
    nonces: dict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)
    for r in runs:
        if r["k"] == "step":
            nonces[(r["e"], r["s"])].add((r["tok"], r["n"]))
    for (eid, name), (result, committed) in recorded.items():
        producer = ("", "")
        if isinstance(result, dict):
            producer = (str(result.get("tok")), str(result.get("n")))
        if producer not in nonces.get((eid, name), set()):
            counts.stale_writes += 1
            counts.note("stale_writes", f"{eid}/{name}: no run of it made {result}")
        elif superseded(leases[eid], producer[0], committed or 0.0):
            counts.stale_writes += 1
            counts.note("stale_writes", f"{eid}/{name}: by superseded lease {producer[0]}")
    for eid, state, _attempt, result_text, _error, _created, finished in executions:
        if state != "succeeded":
            continue
        result = json.loads(result_text)
        token = result.get("tok")
        mismatch = any(
            recorded.get((eid, name), (None, None))[0] != value
            for name, value in result.get("steps", {}).items()
        )
        if mismatch:
            counts.stale_writes += 1
            counts.note("stale_writes", f"{eid}/result: step values differ from the rows")
        elif superseded(leases[eid], token, _ts(finished) or 0.0):
            counts.stale_writes += 1
            counts.note("stale_writes", f"{eid}/result: by superseded lease {token}")


def recovery(spans: Sequence[tuple[float, float | None]], fault_end: float,
             latency: float) -> float | None:
    """Seconds from `fault_end` until the backlog drained for good: the last moment an
    execution was still unfinished `latency` seconds after its invoke. None when something
    never finished."""
    if any(finished is None for _, finished in spans):
        return None
    late = [f for c, f in spans if f is not None and f - c > latency]
    return round(max(0.0, max(late, default=fault_end) - fault_end), 1)
