"""Interleaved A/B of scenarios across checkouts of this repository (each with its own
.venv), so that drift of the machine falls on every commit alike:

    python -m bench.compare ROUNDS S1,S2 /path/to/base /path/to/new [--s1 100000 --s2 5000]

Round r runs every checkout once, in the given order on even rounds and reversed on odd
ones; S1 and S2 run with the given sizes (5x their defaults by default, so that one run takes
10-15 s). Prints each figure as it comes and writes every JSON result to compare-*.json in
the current folder.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Any

#: runs `python -m bench` in a checkout with S1_COUNT and S2_COUNT replaced
_WRAP = ("import sys, bench.scenarios as s; s.S1_COUNT = int(sys.argv[1]);"
         " s.S2_COUNT = int(sys.argv[2]); from bench.__main__ import main;"
         " sys.exit(main(sys.argv[3:]))")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.compare")
    parser.add_argument("rounds", type=int)
    parser.add_argument("scenarios")
    parser.add_argument("checkouts", nargs="+", type=Path)
    parser.add_argument("--s1", type=int, default=100_000)
    parser.add_argument("--s2", type=int, default=5_000)
    parser.add_argument("--database-url",
                        default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    results: dict[str, dict[str, list[Any]]] = {str(d): {} for d in args.checkouts}
    for r in range(args.rounds):
        order = args.checkouts if r % 2 == 0 else args.checkouts[::-1]
        for checkout in order:
            out = subprocess.run(
                [str(checkout / ".venv/bin/python"), "-c", _WRAP, str(args.s1), str(args.s2),
                 "--json", "--only", args.scenarios, "--database-url", args.database_url],
                cwd=checkout, capture_output=True, text=True, timeout=3600, check=False)
            for line in out.stdout.splitlines():
                if line.startswith("{"):
                    figures = json.loads(line)
                    results[str(checkout)].setdefault(figures["id"], []).append(figures)
                    print(r, checkout.name, figures["id"], figures["summary"], flush=True)
            if out.returncode:
                print("failed:", checkout, out.stderr[-2000:], flush=True)
    name = f"compare-{args.scenarios.replace(',', '_')}.json"
    Path(name).write_text(json.dumps(results))


if __name__ == "__main__":
    main()
