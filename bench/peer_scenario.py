"""The peer line: S1's workload on Procrastinate, same PostgreSQL server, same run."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from .harness import PYTHON, ROOT, BenchError, Result
from .scenarios import S1_COUNT, Run

#: jobs the peer drains with its own defaults (one job at a time: S1's 20,000 would take
#: minutes for the same rate)
PEER_DEFAULT_COUNT = 2_000


def peer(run: Run, s1: Result | None, defaults: bool = False) -> Result:
    """Run bench/peer.py on a scratch database; compare with S1 (or S1-default) when it ran
    before. `defaults`: Procrastinate's own worker defaults (one process, concurrency 1, its
    LISTEN/NOTIFY on), as a new user gets it, beside S1-default; else its best tuning."""
    with run.server.scratch("peer") as url:
        count = PEER_DEFAULT_COUNT if defaults else S1_COUNT
        cmd = [PYTHON, "-m", "bench.peer", "--database-url", url, "--count", str(count)]
        if defaults:
            cmd.append("--defaults")
        with open(run.logs / "peer.log", "ab") as log:
            done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=log,
                                  timeout=600, check=False)
    if done.returncode != 0:
        raise BenchError(f"peer exited with {done.returncode}; see {run.logs / 'peer.log'}")
    figures: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    rate = figures["tasks_per_s"]
    if defaults:
        how = "its own defaults: 1 worker process, concurrency 1"
    else:
        tried = ", ".join(
            f"{t['processes']}x{t['concurrency']}: {t['tasks_per_s']}"
            for t in figures["tuning"]
        )
        how = (f"best of processes x concurrency, on {figures['tuning'][0]['jobs']} jobs each:"
               f" {tried} /s -> {figures['processes']}x{figures['concurrency']}")
    summary = f"{rate} tasks/s ({figures['jobs']} jobs, {figures['drain_s']:.2f} s; {how})"
    target, met = None, None
    if s1 is not None and "tasks_per_s" in s1.figures:
        ratio = s1.figures["tasks_per_s"] / rate
        figures["conductor_over_peer"] = round(ratio, 2)
        summary += f"; {s1.id}/peer {ratio:.1f}x"
        target, met = f"{s1.id} >= 10x peer", ratio >= 10
    label = "peer-default" if defaults else "peer"
    return Result(label, f"Procrastinate {figures['procrastinate']} noop throughput",
                  summary, figures, target, met)
