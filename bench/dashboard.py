"""S14: the dashboard's pages with 1,000,000 executions in the database.

The executions are written straight into the scratch database (four registered tasks, no
worker; mostly finished, spread over the last three days so that retention leaves them
alone; a payload {"customer": i % 1000, "order": i}; about every 100th one has five steps and an
attempt). The dashboard runs in this process against the scenario's coordinator; each page
is fetched over HTTP on loopback, and its server time is the Server-Timing header the
dashboard adds (its coordinator calls, their SQL and the rendering; not the network).
"""

from __future__ import annotations

import http.client
import random
import re
import time
from typing import Any

from .harness import BenchError, Result, Stack, percentile
from .scenarios import Run

S14_ROWS = 1_000_000
S14_SAMPLES = 200
S14_TASKS = ("bench-noop", "bench-latency", "bench-backlog", "bench-steps")
#: the issue's targets, ms of server time at p50
LIST_TARGET_MS, DETAIL_TARGET_MS = 100.0, 50.0

_FILL = """
INSERT INTO conductor_executions (task, state, payload, result, run_at, created_at,
    started_at, finished_at, attempt, max_attempts, runs, lease_expires_at)
SELECT (%(tasks)s::text[])[1 + i %% 4],
    s.state::conductor_execution_state,
    jsonb_build_object('customer', i %% 1000, 'order', i),
    CASE WHEN s.state = 'succeeded' THEN jsonb_build_object('ok', i) END,
    t.at, t.at,
    CASE WHEN s.state <> 'pending' THEN t.at END,
    CASE WHEN s.state IN ('succeeded', 'failed', 'cancelled') THEN t.at + interval '40 ms' END,
    CASE WHEN s.state <> 'pending' THEN 1 ELSE 0 END, 3,
    CASE WHEN s.state <> 'pending' THEN 1 ELSE 0 END, NULL
FROM generate_series(1, %(n)s) AS i
CROSS JOIN LATERAL (SELECT now() - (%(n)s - i) * interval '250 ms' AS at) t
CROSS JOIN LATERAL (SELECT CASE WHEN i %% 20 = 0 THEN 'failed' WHEN i %% 20 = 1 THEN 'cancelled'
    WHEN i %% 20 = 2 THEN 'pending' ELSE 'succeeded' END AS state) s
"""
_STEPS = """
INSERT INTO conductor_steps (execution_id, name, result, created_at, seq)
SELECT e.id, 'step-' || k, to_jsonb(k), e.started_at + k * interval '5 ms',
    nextval('conductor_steps_seq')
FROM conductor_executions e CROSS JOIN generate_series(1, 5) AS k
WHERE e.id % 97 = 0 AND e.state = 'succeeded'
"""
_ATTEMPTS = """
INSERT INTO conductor_attempts (execution_id, n, attempt, worker_id, started_at, finished_at,
    outcome)
SELECT id, 1, 1, 'bench-worker', started_at, finished_at, 'succeeded'
FROM conductor_executions WHERE id % 97 = 0 AND state = 'succeeded'
"""


def _fill(stack: Stack) -> float:
    began = time.monotonic()
    stack.db.execute(_FILL, {"tasks": list(S14_TASKS), "n": S14_ROWS})
    stack.db.execute(_STEPS)
    stack.db.execute(_ATTEMPTS)
    stack.db.execute("VACUUM (ANALYZE) conductor_executions")
    stack.db.execute("VACUUM (ANALYZE) conductor_steps")
    return time.monotonic() - began


def _server_ms(conn: http.client.HTTPConnection, path: str) -> float:
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    if response.status != 200:
        raise BenchError(f"S14: GET {path}: {response.status} {body[:200]!r}")
    timing = re.search(r"app;dur=([\d.]+)", response.getheader("server-timing") or "")
    if timing is None:
        raise BenchError(f"S14: GET {path}: no Server-Timing header")
    return float(timing.group(1))


def _figures(samples: list[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(samples, 50), 2),
            "p99_ms": round(percentile(samples, 99), 2), "n": len(samples)}


def s14_dashboard(run: Run) -> Result:
    """List and detail pages of the dashboard over 1,000,000 executions."""
    from conductor_ui import UIServer, UISettings
    from conductor_worker import AsyncClient

    with run.stack("s14") as stack:
        registrar = stack.start_worker(*S14_TASKS)
        stack.wait_registered(*S14_TASKS)
        stack.stop_worker(registrar)
        fill = _fill(stack)
        rows = stack.db.execute("SELECT count(*), max(id) FROM conductor_executions").fetchone()
        if rows is None or rows[0] != S14_ROWS:
            raise BenchError("S14: the executions were not written")
        top = int(rows[1])
        detailed = [r[0] for r in stack.db.execute(
            "SELECT DISTINCT execution_id FROM conductor_steps ORDER BY 1").fetchall()]
        address = stack.address
        server = UIServer(UISettings(client=lambda: AsyncClient(address, timeout=30), port=0))
        url = server.start()
        try:
            return _measure(url, top, detailed, fill)
        finally:
            server.stop()


def _measure(url: str, top: int, detailed: list[int], fill: float) -> Result:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    rng = random.Random(14)
    pages: dict[str, Any] = {
        "list": lambda: "/executions",
        "list_task": lambda: f"/executions?task={S14_TASKS[rng.randrange(4)]}",
        "list_failed": lambda: "/executions?state=failed",
        "list_deep": lambda: f"/executions?page={rng.randrange(50_000, top)}",
        "list_task_state_deep": lambda: (f"/executions?task=bench-noop&state=failed"
                                         f"&page={rng.randrange(50_000, top)}"),
        "list_payload": lambda: f"/executions?payload=customer%3D{rng.randrange(1000)}",
        "detail": lambda: f"/executions/{rng.choice(detailed)}",
    }
    figures: dict[str, Any] = {"rows": S14_ROWS, "fill_s": round(fill, 1)}
    for name, path in pages.items():
        for _ in range(10):  # warm: connections, plans, caches
            _server_ms(conn, path())
        figures[name] = _figures([_server_ms(conn, path()) for _ in range(S14_SAMPLES)])
    conn.close()
    listing = max(figures[k]["p50_ms"] for k in pages if k.startswith("list")
                  and k != "list_payload")
    detail = figures["detail"]["p50_ms"]
    summary = (
        f"list p50 {figures['list']['p50_ms']:.1f} ms (worst filter {listing:.1f} ms; "
        f"payload search {figures['list_payload']['p50_ms']:.1f} ms), detail p50 "
        f"{detail:.1f} ms, p99 {figures['detail']['p99_ms']:.1f} ms, over {S14_ROWS:,} "
        f"executions ({S14_SAMPLES} samples per page)"
    )
    target = f"list p50 <= {LIST_TARGET_MS:.0f} ms and detail p50 <= {DETAIL_TARGET_MS:.0f} ms"
    return Result("S14", "dashboard", summary, figures, target,
                  listing <= LIST_TARGET_MS and detail <= DETAIL_TARGET_MS)
