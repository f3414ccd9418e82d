"""The web dashboard: a client of the coordinator's public gRPC API that serves server-rendered
pages (Starlette + Jinja2, a little JavaScript, live updates by server-sent events).

`conductor ui --server ADDR` runs it; `conductor dev` runs it next to its coordinator.
docs/dashboard.md describes the pages, the security model and the deployment."""

from __future__ import annotations

from .app import create_app
from .serve import UIServer
from .settings import UISettings

__all__ = ["UIServer", "UISettings", "create_app"]
