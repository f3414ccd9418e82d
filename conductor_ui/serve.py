"""Running the dashboard: uvicorn on a socket bound up front (so port 0 works and the URL
is known before the first request), in the foreground (`conductor ui`) or in a thread
(`conductor dev`, tests)."""

from __future__ import annotations

import logging
import signal
import socket
import threading

import uvicorn

from .app import create_app
from .settings import UISettings

log = logging.getLogger("conductor.ui")


class UIServer:
    """The dashboard listening on settings.host:settings.port."""

    def __init__(self, settings: UISettings) -> None:
        self.settings = settings
        family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind((settings.host, settings.port))
        except OSError:
            self._socket.close()
            raise
        self._socket.listen(128)
        config = uvicorn.Config(create_app(settings), log_level="warning", access_log=False,
                                lifespan="on", timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._socket.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}"

    def run(self) -> None:
        """Serve until SIGINT or SIGTERM, then return (uvicorn handles both while it runs and
        re-raises the one it caught once it has stopped: as KeyboardInterrupt, caught here)."""

        def interrupt(signum: int, frame: object) -> None:
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGTERM, interrupt)
        try:
            self._server.run(sockets=[self._socket])
        except KeyboardInterrupt:
            log.info("dashboard stopped")
        finally:
            signal.signal(signal.SIGTERM, previous)
            self._socket.close()

    def start(self) -> str:
        """Serve in a thread; returns the URL once it accepts requests."""
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self._socket]},
                                        name="conductor-ui", daemon=True)
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the dashboard did not start (see the log)")
            self._thread.join(0.02)
        return self.url

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self._socket.close()
