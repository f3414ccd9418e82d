"""S9: the retention soak. No-op executions pushed through one coordinator in rounds, with
succeeded executions kept for a few seconds only: the executions table must stay flat,
dispatch latency and throughput must not drift.

Dispatch latency is sampled S3-style (1,000 sequential invokes, nothing else sent) at four
marks: "start", before the first round; "middle", between two rounds halfway; "last round",
right after the last round, while retention deletes the rounds of the last 10 s and the
coordinator vacuums after it; and "end", once that is done (no soak execution left, the
executions table's dead rows below the coordinator's vacuum threshold). Start and end are
both idle, so their ratio shows what two million executions left behind; middle and last
round show what retention's concurrent work costs a dispatch."""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

from conductor_server.settings import Settings

from .harness import BenchError, Result, Stack
from .scenarios import Run, dispatch_latencies

#: executions in all (CONDUCTOR_BENCH_S9_TOTAL overrides: the issue's soak is 2,000,000)
S9_TOTAL = int(os.environ.get("CONDUCTOR_BENCH_S9_TOTAL", "2000000"))
S9_ROUND = 20_000
#: seconds succeeded executions are kept, and between maintenance passes
S9_RETENTION = 10.0
S9_INTERVAL = 1.0
S9_LATENCY_SAMPLES = 1000
#: seconds the end waits for retention to delete the last rounds and vacuum after them
S9_QUIESCE = S9_RETENTION + 60.0
#: the coordinator's default --vacuum-dead-rows (the soak's coordinator runs with it)
S9_VACUUM_DEAD_ROWS = Settings().vacuum_dead_rows
S9_PLAIN_ROUNDS = 5
#: seconds after which the table counts as settled: the first retention period plus two of
#: autovacuum's default naptime (60 s), since deleted rows' space is reused only once
#: vacuumed
S9_SETTLE = S9_RETENTION + 120.0
MIB = 1024 * 1024


def _sizes(stack: Stack) -> dict[str, int]:
    row = stack.db.execute(
        "SELECT pg_total_relation_size('conductor_executions'),"
        " pg_indexes_size('conductor_executions'),"
        " pg_total_relation_size('conductor_attempts'), pg_total_relation_size('conductor_steps'),"
        " (SELECT count(*) FROM conductor_executions)"
    ).fetchone()
    assert row is not None
    return {"executions_bytes": row[0], "executions_index_bytes": row[1],
            "attempts_bytes": row[2], "steps_bytes": row[3], "rows": row[4]}


def _autovacuum(stack: Stack) -> bool:
    row = stack.db.execute("SHOW autovacuum").fetchone()
    return bool(row and row[0] == "on")


def _vacuum(stack: Stack) -> None:
    """What autovacuum would do, on a server where it is off: deleted rows' space is reused
    only once vacuumed."""
    stack.db.execute("VACUUM conductor_executions, conductor_attempts, conductor_steps")


def _vacuum_stats(stack: Stack) -> dict[str, float]:
    """How often the executions table was vacuumed (by the coordinator: vacuum_count; by
    autovacuum) and, on PostgreSQL 18 and later, for how many seconds in all."""
    columns = {r[0] for r in stack.db.execute(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_name = 'pg_stat_user_tables'").fetchall()}
    wanted = ["vacuum_count", "autovacuum_count"]
    if "total_vacuum_time" in columns:
        wanted += ["total_vacuum_time", "total_autovacuum_time"]
    row = stack.db.execute(
        f"SELECT {', '.join(wanted)} FROM pg_stat_user_tables"  # type: ignore[arg-type]
        " WHERE relname = 'conductor_executions'").fetchone()
    assert row is not None
    figures = dict(zip(wanted, row, strict=True))
    return {("vacuum_s" if k == "total_vacuum_time" else
             "autovacuum_s" if k == "total_autovacuum_time" else k):
            (round(float(v) / 1000, 1) if k.startswith("total") else int(v))
            for k, v in figures.items()}


def _round(stack: Stack, task: str) -> float:
    """One S1-style round: an InvokeBatch, drained; executions/s over its wall time."""
    began = time.monotonic()
    stack.client.invoke_batch(task, list(range(S9_ROUND)))
    stack.wait_idle(task, timeout=300)
    return S9_ROUND / (time.monotonic() - began)


def _quiesce(stack: Stack) -> float:
    """Wait until retention deleted every execution (the soak's and the latency samples') and
    the executions table's dead rows are below the vacuum threshold, as at the start; returns
    the seconds waited."""
    began = time.monotonic()
    while True:
        row = stack.db.execute(
            "SELECT (SELECT count(*) FROM conductor_executions),"
            " (SELECT n_dead_tup FROM pg_stat_user_tables"
            "  WHERE relname = 'conductor_executions')").fetchone()
        assert row is not None
        if row[0] == 0 and row[1] < S9_VACUUM_DEAD_ROWS:
            return time.monotonic() - began
        if time.monotonic() - began > S9_QUIESCE:
            raise BenchError(f"S9: {row[0]} executions and {row[1]} dead rows left"
                             f" {S9_QUIESCE:.0f} s after the last round")
        time.sleep(0.5)


def _prepare(stack: Stack) -> None:
    stack.start_worker("bench-noop", "bench-latency")
    stack.wait_registered("bench-noop", "bench-latency")
    stack.warm_up("bench-noop", 200)
    dispatch_latencies(stack, "bench-latency", 20)


def _plain_rounds(run: Run, label: str) -> list[float]:
    """The reference: S9_PLAIN_ROUNDS rounds on a fresh coordinator without retention."""
    with run.stack(label) as stack:
        _prepare(stack)
        return [_round(stack, "bench-noop") for _ in range(S9_PLAIN_ROUNDS)]


def s9_soak(run: Run) -> Result:
    """S9_TOTAL no-op executions in rounds of 20,000 through one coordinator that keeps
    succeeded executions for 10 s (maintenance every second); table size after every round,
    S3-style dispatch latency at four marks (see the module's text); round throughput against
    the same rounds on a coordinator without retention, run before the soak and again after it
    (the machine's speed drifts over the soak's minutes: the reference brackets it)."""
    before = _plain_rounds(run, "s9-plain-before")
    rounds = max(3, S9_TOTAL // S9_ROUND)
    marks = {0: "start", rounds // 2: "middle", rounds: "last_round"}
    latency: dict[str, dict[str, Any]] = {}
    sizes: list[tuple[float, dict[str, int]]] = []
    rates: list[float] = []
    retention = ("--retention-succeeded", str(S9_RETENTION),
                 "--maintenance-interval", str(S9_INTERVAL))
    with run.stack("s9", *retention) as stack:
        _prepare(stack)
        autovacuum = _autovacuum(stack)
        began = time.monotonic()
        for k in range(rounds + 1):
            if k in marks:
                latency[marks[k]] = dispatch_latencies(stack, "bench-latency",
                                                       S9_LATENCY_SAMPLES)
            if k < rounds:
                rates.append(_round(stack, "bench-noop"))
                if not autovacuum:
                    _vacuum(stack)
                sizes.append((time.monotonic() - began, _sizes(stack)))
        row = stack.db.execute("SELECT count(*) FROM conductor_executions"
                               " WHERE state = ANY('{pending,running}')").fetchone()
        quiesced = _quiesce(stack)
        latency["end"] = dispatch_latencies(stack, "bench-latency", S9_LATENCY_SAMPLES)
        vacuums = _vacuum_stats(stack)
    if row and row[0]:
        raise BenchError(f"S9: {row[0]} executions still pending or running at the end")
    after = _plain_rounds(run, "s9-plain-after")
    result = _result(before + after, rates, sizes, latency, rounds * S9_ROUND)
    result.figures["plain_before_tasks_per_s"] = round(statistics.median(before))
    result.figures["plain_after_tasks_per_s"] = round(statistics.median(after))
    result.figures["quiesced_after_s"] = round(quiesced, 1)
    result.figures["server_autovacuum"] = autovacuum
    result.figures.update(vacuums)
    if not autovacuum:
        result.notes.append("autovacuum is off on this server: VACUUM ran after every round")
    return result


def _result(plain: list[float], rates: list[float], sizes: list[tuple[float, dict[str, int]]],
            latency: dict[str, dict[str, Any]], total: int) -> Result:
    settled = [s for t, s in sizes if t > S9_SETTLE] or [sizes[-1][1]]
    first = settled[0]["executions_bytes"]
    largest = max(s["executions_bytes"] for s in settled)
    growth = largest / first
    p99_ratio = latency["end"]["p99_ms"] / latency["start"]["p99_ms"]
    busy_ratio = max(latency["middle"]["p99_ms"],
                     latency["last_round"]["p99_ms"]) / latency["start"]["p99_ms"]
    plain_rate = statistics.median(plain)
    soak_rate = statistics.median(rates)
    throughput_ratio = soak_rate / plain_rate
    figures = {
        "executions": total,
        "rounds": len(rates),
        "retention_s": S9_RETENTION,
        "settled_after_s": S9_SETTLE,
        "plain_tasks_per_s": round(plain_rate),
        "soak_tasks_per_s": round(soak_rate),
        "soak_min_tasks_per_s": round(min(rates)),
        "throughput_ratio": round(throughput_ratio, 3),
        "table_mib_first_settled": round(first / MIB, 1),
        "table_mib_max_settled": round(largest / MIB, 1),
        "table_mib_end": round(sizes[-1][1]["executions_bytes"] / MIB, 1),
        "index_mib_end": round(sizes[-1][1]["executions_index_bytes"] / MIB, 1),
        "attempts_mib_end": round(sizes[-1][1]["attempts_bytes"] / MIB, 1),
        "rows_end": sizes[-1][1]["rows"],
        "table_growth": round(growth, 3),
        "p99_ratio_end_start": round(p99_ratio, 2),
        "p99_ratio_during_retention_start": round(busy_ratio, 2),
        **{f"{mark}_p50_ms": figures["p50_ms"] for mark, figures in latency.items()},
        **{f"{mark}_p99_ms": figures["p99_ms"] for mark, figures in latency.items()},
        "sizes_mib": [round(s["executions_bytes"] / MIB, 1) for _, s in sizes],
    }
    met = growth <= 1.25 and p99_ratio <= 1.5 and throughput_ratio >= 0.9
    return Result(
        "S9", "retention soak",
        f"{total} executions; table {figures['table_mib_first_settled']} -> max"
        f" {figures['table_mib_max_settled']} MiB after {S9_SETTLE:.0f} s (x"
        f"{growth:.2f}), {figures['rows_end']} rows at the end; dispatch p99"
        f" {latency['start']['p99_ms']:.2f} / {latency['middle']['p99_ms']:.2f} /"
        f" {latency['last_round']['p99_ms']:.2f} / {latency['end']['p99_ms']:.2f} ms"
        f" (start/middle/last round/end, x{p99_ratio:.2f} end/start); {soak_rate:.0f} tasks/s"
        f" per round against {plain_rate:.0f} without retention (x{throughput_ratio:.2f})",
        figures,
        "table within 25%, p99 within 1.5x, throughput within 10%",
        met,
    )
