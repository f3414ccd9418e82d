"""Conductor's benchmark: S1-S8 (with S1-batch, S1-timeout), S11-S14 and the Procrastinate
peer, one line of figures each (S9, the retention soak, and S9-delete, its delete statement
alone, only when named in --only).

    .venv/bin/python -m bench [--json] [--only S1,peer,S3] [--database-url URL] [--profile DIR]

PostgreSQL: --database-url, else $CONDUCTOR_DATABASE_URL, else an embedded PostgreSQL in a
temporary folder, started once for the run. Every scenario (and the peer) creates its own
scratch database on that server and drops it afterwards; each starts its own coordinator
and worker processes. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from .dashboard import s14_dashboard
from .deletes import s9_delete
from .fairness import s11_fairness, s12_priority
from .harness import PostgresServer, Result, busy_cores
from .many import MANY
from .peer_scenario import peer
from .scenarios import SCENARIOS, Run
from .soak import s9_soak

#: every scenario by name; the peer lines compare with the S1 line of their kind
EVERY = {**SCENARIOS, **MANY, "S11": s11_fairness, "S12": s12_priority, "S14": s14_dashboard}

ORDER = ["S1", "S1-default", "S1-batch", "S1-timeout", "S1-keyed", "S1-rate", "peer",
         "peer-default", "S2", "S2-sync", "S3", "S4", "S5", "S6", "S7", "S7-fanout", "S8", "S11",
         "S12", "S13", "S13-spawn", "S13-shared", "S14"]
#: scenarios that run only when named in --only (S9 soaks for many minutes)
ON_REQUEST = {"S9": s9_soak, "S9-delete": s9_delete}


def machine() -> str:
    memory = ""
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                memory = f", {int(line.split()[1]) / 1024 / 1024:.0f} GiB memory"
    cpu = platform.processor() or platform.machine()
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores ({cpu}){memory}, Python {platform.python_version()}"


QUIET = 0.25  # busy cores below which the machine counts as quiet


def wait_quiet(seconds: float) -> float:
    """Busy cores just before a scenario, after waiting up to `seconds` for a quiet machine."""
    deadline = time.monotonic() + seconds
    load = busy_cores(1.0)
    while load > QUIET and time.monotonic() < deadline:
        load = busy_cores(2.0)
    return load


def parse_only(value: str) -> list[str]:
    wanted = [v.strip() for v in value.split(",") if v.strip()]
    known = {name.lower(): name for name in [*ORDER, *ON_REQUEST]}
    unknown = [v for v in wanted if v.lower() not in known]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {','.join(ORDER)}")
    chosen = {known[v.lower()] for v in wanted}
    return [name for name in [*ORDER, *ON_REQUEST] if name in chosen]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--only", type=parse_only, default=ORDER,
                        help=f"comma-separated subset of {','.join(ORDER)} (default: all)")
    parser.add_argument("--database-url", default=os.environ.get("CONDUCTOR_DATABASE_URL"),
                        help="PostgreSQL server to create scratch databases on (default:"
                        " $CONDUCTOR_DATABASE_URL, else an embedded PostgreSQL)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="record the coordinator and worker with py-spy during S1-S3")
    parser.add_argument("--profile-native", action="store_true",
                        help="with --profile: record C frames too (py-spy --native)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="before each scenario, wait up to SECONDS for the machine to be"
                        " quiet (under 0.25 busy cores); the load seen is reported either way")
    parser.add_argument("--logs", type=Path, metavar="DIR",
                        help="keep the coordinator and worker logs here (default: a temporary"
                        " folder, removed unless something failed)")
    args = parser.parse_args(argv)

    logs = args.logs or Path(tempfile.mkdtemp(prefix="conductor-bench-logs-"))
    logs.mkdir(parents=True, exist_ok=True)
    failed = False
    results: dict[str, Result] = {}
    began = time.monotonic()
    with PostgresServer(args.database_url) as server:
        print(f"# {machine()}; {server.description}", file=sys.stderr, flush=True)
        run = Run(server, logs, args.profile, args.profile_native)
        for name in args.only:
            load = wait_quiet(args.wait_quiet)
            started = time.monotonic()
            try:
                scenario = EVERY.get(name) or ON_REQUEST.get(name)
                if scenario is not None:
                    result = scenario(run)
                elif name == "peer-default":
                    result = peer(run, results.get("S1-default"), defaults=True)
                else:
                    result = peer(run, results.get("S1"))
            except Exception as exc:
                failed = True
                traceback.print_exc()
                result = Result(name, "failed", f"{type(exc).__name__}: {exc}", {})
            result.figures["scenario_s"] = round(time.monotonic() - started, 1)
            result.figures["busy_cores_before"] = round(load, 2)
            if load > QUIET:
                result.notes.append(f"machine busy before start: {load:.1f} cores")
            results[name] = result
            print(json.dumps(result.as_json()) if args.json else result.line(), flush=True)
    print(f"# done in {time.monotonic() - began:.0f} s", file=sys.stderr)
    if failed:
        print(f"# logs kept in {logs}", file=sys.stderr)
    elif args.logs is None:
        shutil.rmtree(logs, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
