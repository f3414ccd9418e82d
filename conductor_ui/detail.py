"""The execution page's data, gathered in one place as named sections, each rendered by its
own template (templates/_section_<name>.html).

To add a section (for example the coordinator's "why is it not running" explanation once the
API has it): write a loader that fills the section's data from the client, add its name to
SECTIONS in the order the page shows them, and add templates/_section_<name>.html.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from conductor_worker import AsyncClient, Execution

from .timeline import timeline

#: sections of the execution page, top to bottom
SECTIONS = ("summary", "explanation", "payload", "outcome", "steps", "attempts", "children",
            "logs")
#: children and log lines shown on the page (the rest are a link / the CLI away)
CHILDREN_SHOWN = 50
LOGS_SHOWN = 200


@dataclass
class Detail:
    """Everything the execution page shows."""

    execution: Execution
    now: datetime
    sections: tuple[str, ...] = SECTIONS
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        return not self.execution.finished


Loader = Callable[[AsyncClient, Execution], Awaitable[Any]]


async def _steps(client: AsyncClient, execution: Execution) -> Any:
    steps = await client.steps(execution.id)
    return timeline(execution, steps, datetime.now(UTC)), steps


async def _children(client: AsyncClient, execution: Execution) -> Any:
    return await client.page(parent_id=execution.id, page_size=CHILDREN_SHOWN)


async def _logs(client: AsyncClient, execution: Execution) -> Any:
    lines = await client.logs(execution.id)
    return lines[-LOGS_SHOWN:], len(lines)


#: sections that need more than the execution itself
LOADERS: dict[str, Loader] = {"steps": _steps, "children": _children, "logs": _logs}


async def load(client: AsyncClient, execution_id: str) -> Detail:
    """The execution (with its attempts) and every section's data, fetched concurrently."""
    execution = await client.get(execution_id)
    detail = Detail(execution, datetime.now(UTC))
    names = [name for name in detail.sections if name in LOADERS]
    results = await asyncio.gather(*(LOADERS[name](client, execution) for name in names))
    detail.data.update(zip(names, results, strict=True))
    return detail


def pretty(value: Any) -> str:
    """A JSON value as indented text."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)
