"""Wires the coordinator: database, store, dispatcher, gRPC server, health and reflection."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Coroutine
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from conductor.v1 import client_pb2, client_pb2_grpc, worker_pb2, worker_pb2_grpc

from .client_service import ClientService
from .clock import Clock, SystemClock
from .database import EmbeddedPostgres
from .dispatch import Dispatcher
from .interceptors import AuthInterceptor, ErrorInterceptor, MetricsInterceptor
from .loop_errors import log_failed_pass
from .maintenance import Maintenance
from .metrics import CoordinatorMetrics
from .scheduler import Scheduler
from .settings import Settings
from .store import Store
from .vacuum import Vacuum
from .waiters import Waiters
from .worker_service import WorkerService

log = logging.getLogger(__name__)
T = TypeVar("T")

SERVICE_NAMES = (
    client_pb2.DESCRIPTOR.services_by_name["ConductorService"].full_name,
    worker_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name,
)

#: HTTP/2 keepalive both ways: the server pings idle connections and drops those that do not
#: answer, and accepts the pings workers send (conductor_worker.connection, every 10 s) even
#: on a stream without data, however many. Stream liveness is also checked by the
#: application (heartbeats and their acks: Dispatcher.check_liveness).
KEEPALIVE_OPTIONS = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_ping_strikes", 0),
]


def server_options(settings: Settings) -> list[tuple[str, int]]:
    """Transport limits (docs/limits.md): a message above the limit is refused before it is
    buffered whole; connections with no call in progress are closed after idle_timeout."""
    idle_ms = int(settings.idle_timeout * 1000)
    return [
        ("grpc.max_receive_message_length", settings.message_limit),
        ("grpc.max_connection_idle_ms", idle_ms),
        ("grpc.max_concurrent_streams", MAX_STREAMS_PER_CONNECTION),
        ("grpc.max_metadata_size", 16 * 1024),
        # gRPC's default (1) lets a second coordinator listen on a taken port, and the
        # kernel then splits calls between the two
        ("grpc.so_reuseport", 0),
        *KEEPALIVE_OPTIONS,
    ]


#: calls one connection may have open at once
MAX_STREAMS_PER_CONNECTION = 1000


class Coordinator:
    """One coordinator process's worth of machinery, started and stopped as a unit."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.embedded: EmbeddedPostgres | None = None
        self.store: Store | None = None
        self.dispatcher: Dispatcher | None = None
        self.scheduler: Scheduler | None = None
        self.maintenance: Maintenance | None = None
        self.vacuum: Vacuum | None = None
        self.server: grpc.aio.Server | None = None
        self.health = health.aio.HealthServicer()
        self.metrics = CoordinatorMetrics()
        self.port = 0
        self.metrics_port = 0
        self._listener: asyncio.Task[None] | None = None
        self._workers: WorkerService | None = None

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.port}"

    async def start(self) -> None:
        check_address_free(self.settings.host, self.settings.port)  # before the database
        url = self.settings.database_url
        if url is None:
            self.embedded = EmbeddedPostgres(self.settings.data_dir)
            url = await asyncio.to_thread(self.embedded.start)
        self.store = Store(url, self.settings.pool_size)
        await self.store.open()
        applied = await self.store.migrate()
        await self.store.set_limits(self.settings.max_steps_bytes)
        if applied:
            log.info("applied migrations %s", applied)
        waiters = Waiters()
        self.dispatcher = Dispatcher(
            self.store, self.clock, self.settings, waiters, self.metrics
        )
        self.dispatcher.start()
        self.scheduler = Scheduler(self.store, self.clock, self.dispatcher)
        self.scheduler.start()
        self.maintenance = Maintenance(self.store, self.clock, self.settings, self.metrics)
        self.maintenance.start()
        self.vacuum = Vacuum(self.store, self.settings.vacuum_dead_rows, self.metrics)
        self.vacuum.start()
        self._listener = asyncio.create_task(self._listen(), name="listen")
        interceptors: list[grpc.aio.ServerInterceptor] = [MetricsInterceptor(self.metrics)]
        if self.settings.auth_token:
            interceptors.append(AuthInterceptor(self.settings.auth_token))
        interceptors.append(ErrorInterceptor())
        self.server = grpc.aio.server(
            interceptors=interceptors,
            options=server_options(self.settings),
        )
        client_pb2_grpc.add_ConductorServiceServicer_to_server(
            ClientService(
                self.store, self.dispatcher, self.scheduler, self.clock, self.settings
            ),
            self.server,
        )
        self._workers = WorkerService(self.dispatcher, self.scheduler, self.settings)
        worker_pb2_grpc.add_WorkerServiceServicer_to_server(self._workers, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, reflection.SERVICE_NAME, health.SERVICE_NAME), self.server
        )
        self.port = self._bind(self.server)
        self.dispatcher.name = f"{socket.gethostname()}:{self.port}"
        await self.server.start()
        if self.settings.metrics_port is not None:
            self.metrics_port = self.metrics.serve(self.settings.host, self.settings.metrics_port)
            log.info("metrics on http://%s:%d/metrics", self.settings.host, self.metrics_port)
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("coordinator listening on %s", self.address)

    def _bind(self, server: grpc.aio.Server) -> int:
        try:
            return self._add_port(server)
        except RuntimeError:  # taken since check_address_free, or not an address of ours
            where = f"{self.settings.host}:{self.settings.port}"
            raise BindError(f"{where}: cannot listen there") from None

    def _add_port(self, server: grpc.aio.Server) -> int:
        where = f"{self.settings.host}:{self.settings.port}"
        s = self.settings
        if s.tls_cert is None or s.tls_key is None:  # both or neither: see Settings
            return server.add_insecure_port(where)
        client_ca = s.tls_client_ca.read_bytes() if s.tls_client_ca else None
        credentials = grpc.ssl_server_credentials(
            [(s.tls_key.read_bytes(), s.tls_cert.read_bytes())],
            root_certificates=client_ca,
            require_client_auth=client_ca is not None,
        )
        return server.add_secure_port(where, credentials)

    async def _listen(self) -> None:
        assert self.store is not None and self.dispatcher is not None
        while True:
            try:
                await self.dispatcher.refresh_pauses()
                async for channel, payload in self.store.listen(
                    "conductor_ready", "conductor_finished", "conductor_cancel",
                    "conductor_paused",
                ):
                    if channel == "conductor_ready":
                        self.dispatcher.wake(payload)
                    elif channel == "conductor_paused":
                        await self.dispatcher.refresh_pauses()
                    elif channel == "conductor_finished":
                        await self._finished(payload)
                    else:
                        for execution_id in payload.split(","):
                            self.dispatcher.cancel_running(int(execution_id))
            except asyncio.CancelledError:
                raise
            except Exception:
                log_failed_pass(log, "LISTEN connection lost; reconnecting")
                self.dispatcher.wake_all()
                await asyncio.sleep(1)

    async def _finished(self, payload: str) -> None:
        """Wake waiters named by a notification ('*': too many to name, so re-check)."""
        assert self.store is not None and self.dispatcher is not None
        waiters = self.dispatcher.waiters
        if payload != "*":
            waiters.finished(int(i) for i in payload.split(","))
        elif waiting := waiters.waiting():
            waiters.finished(await self.store.finished_among(waiting))

    async def stop(self, grace: float = 5.0) -> None:
        """Graceful stop: NOT_SERVING, close worker streams, drain calls, close the database.

        Every phase has a time limit: a stuck phase is logged and the stop goes on."""
        await self.health.enter_graceful_shutdown()
        if self.settings.shutdown_delay > 0:
            await asyncio.sleep(self.settings.shutdown_delay)
        if self.dispatcher is not None:
            for session in list(self.dispatcher.sessions.values()):
                session.close()
        if self.server is not None:
            await _bounded("gRPC server", self.server.stop(grace), grace + 5)
        if self._listener is not None:
            self._listener.cancel()
            await _bounded("listener", asyncio.gather(self._listener, return_exceptions=True))
        if self.scheduler is not None:
            await _bounded("scheduler", self.scheduler.stop())
        if self.maintenance is not None:
            await _bounded("maintenance", self.maintenance.stop())
        if self.vacuum is not None:
            await _bounded("vacuum", self.vacuum.stop())
        if self.dispatcher is not None:
            await _bounded("dispatcher", self.dispatcher.stop())
        self.metrics.close()
        if self.store is not None:
            await _bounded("database pool", self.store.close())
        if self.embedded is not None:
            await _bounded("embedded PostgreSQL", asyncio.to_thread(self.embedded.stop), 30)


class BindError(OSError):
    """The coordinator cannot listen on its address (another process holds the port)."""


def check_address_free(host: str, port: int) -> None:
    """Raise BindError when something listens on (host, port) already: a one-line error at
    start instead of gRPC's log lines (port 0 is always free)."""
    if port == 0:
        return
    for family, kind, proto, _, address in socket.getaddrinfo(
        host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    ):
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds
            try:
                probe.bind(address)
            except OSError as exc:  # other errors are gRPC's to judge (it needs one address)
                if exc.errno == errno.EADDRINUSE:
                    raise BindError(f"{host}:{port}: address already in use") from None


async def _bounded(what: str, step: Awaitable[object], seconds: float = 10.0) -> None:
    try:
        await asyncio.wait_for(step, seconds)
    except TimeoutError:
        log.error("stopping the %s took more than %.0f s; going on", what, seconds)


@contextlib.asynccontextmanager
async def running(settings: Settings, clock: Clock | None = None) -> AsyncIterator[Coordinator]:
    coordinator = Coordinator(settings, clock)
    try:
        await coordinator.start()
        yield coordinator
    finally:
        await coordinator.stop()


async def serve(settings: Settings, on_ready: threading.Event | None = None) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with running(settings) as coordinator:
        print(f"conductor coordinator listening on {coordinator.address}", flush=True)
        if on_ready is not None:
            on_ready.set()
        await stop.wait()
        log.info("stopping")


class CoordinatorThread:
    """A coordinator on its own event loop in a background thread (tests, `conductor dev`)."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.coordinator = Coordinator(settings, clock)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> str:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.coordinator.start(), self._loop).result(120)
        return self.coordinator.address

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the coordinator's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(120)

    def stop(self, grace: float = 2.0) -> None:
        """Stop the coordinator and its thread (a second call does nothing)."""
        if not self._thread.is_alive():
            return
        try:
            self.run(self.coordinator.stop(grace))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
