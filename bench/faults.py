"""The fault suite's long version: one table row per scenario.

    .venv/bin/python -m bench.faults [--only NAME[,NAME]] [--json] [--ci] [--logs DIR]

Every scenario of tests/faults/scenarios.py runs with the long profile (100 invokes/s of
five-step tasks, lease timeout 5 s, faults past the lease timeout held for two of them) on
a PostgreSQL server of its own; --ci runs the short profile the pytest version uses. The
exit status is 1 when any scenario fails its checks. See docs/reliability.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from tests.faults.cluster import ROOT
from tests.faults.scenarios import BY_NAME, CI, LONG, SCENARIOS, Outcome, postgres, run_scenario

COLUMNS = [
    ("scenario", 26), ("execs", 6), ("inv.err", 7), ("lost", 5), ("stuck", 5),
    ("rerun>rec", 9), ("rerun<rec", 9), ("stale", 5), ("burned", 6), ("burn>1", 6),
    ("recover_s", 9), ("verdict", 7),
]


def _row(outcome: Outcome) -> list[str]:
    c = outcome.counts
    burned = f"{c.burned}{'!' if outcome.scenario.no_burn else ''}"
    recover = "never" if c.recover_s is None else f"{c.recover_s:.1f}"
    return [outcome.scenario.name, str(c.executions), str(c.invoke_errors), str(c.lost),
            str(c.stuck), str(c.rerun_after_recorded), str(c.rerun_unacked),
            str(c.stale_writes), burned, str(c.burned_twice), recover,
            "pass" if outcome.passed else "FAIL"]


def _line(cells: list[str]) -> str:
    return "| " + " | ".join(c.ljust(w) for c, (_, w) in zip(cells, COLUMNS, strict=True)) + " |"


def _commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    return done.stdout.strip() or "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated scenario names: "
                        + ", ".join(s.name for s in SCENARIOS))
    parser.add_argument("--json", action="store_true", help="one JSON object per scenario")
    parser.add_argument("--ci", action="store_true", help="the short profile of the tests")
    parser.add_argument("--logs", help="keep process logs and run records here")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else [s.name for s in SCENARIOS]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {sorted(BY_NAME)}")
    profile = CI if args.ci else LONG
    logs = Path(args.logs) if args.logs else Path(tempfile.mkdtemp(prefix="bench-faults-"))
    if not args.json:
        print(f"# fault suite, profile {profile.name}: {profile.rate:g} invokes/s, lease timeout"
              f" {profile.lease_timeout:g} s, steps of {profile.step_sleep:g} s; commit"
              f" {_commit()}; logs in {logs}", flush=True)
        print(_line([name for name, _ in COLUMNS]))
        print("|" + "|".join("-" * (w + 2) for _, w in COLUMNS) + "|", flush=True)
    failed = 0
    with postgres() as pg:
        for name in names:
            began = time.monotonic()
            try:
                outcome = run_scenario(BY_NAME[name], profile, pg, logs / name)
            except Exception:
                failed += 1
                print(f"{name}: could not run:\n{traceback.format_exc()}", file=sys.stderr)
                continue
            failed += not outcome.passed
            if args.json:
                record: dict[str, Any] = {"scenario": name, "profile": profile.name,
                                          "passed": outcome.passed,
                                          "failures": outcome.failures,
                                          "seconds": round(time.monotonic() - began, 1),
                                          **outcome.counts.as_dict()}
                print(json.dumps(record), flush=True)
            else:
                print(_line(_row(outcome)), flush=True)
                if outcome.failures:
                    print(f"  {name}: {'; '.join(outcome.failures)};"
                          f" e.g. {outcome.counts.examples}", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
