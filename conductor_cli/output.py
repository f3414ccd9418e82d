"""What the client commands print: JSON of an execution, aligned tables, times."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any


def print_execution(execution: Any) -> None:
    print(json.dumps(execution.to_dict(), indent=2, default=str))


def print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "-"
