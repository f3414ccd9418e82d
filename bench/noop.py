"""The old quick throughput check, now scenario S1 of the benchmark.

    .venv/bin/python bench/noop.py [--json] ...   is   .venv/bin/python -m bench --only S1 ...
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.__main__ import main

    sys.exit(main(["--only", "S1", *sys.argv[1:]]))
