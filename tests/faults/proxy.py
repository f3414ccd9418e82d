"""A loopback TCP proxy that can cut, stall and heal the connections it carries.

It sits between a worker and its coordinator(s) on 127.0.0.1 and runs an asyncio loop in a
thread of its own, so that tests drive it with plain method calls:

- pass (the default): bytes flow both ways;
- cut(): every connection is reset on both sides (SO_LINGER 0, then close, so the peers see
  an RST) and new connections are reset as soon as they are accepted, until heal();
- stall(): the sockets stay open but nothing is forwarded in either direction (the bytes are
  held, in the proxy and in the kernel's buffers) and a closing peer is not passed on; new
  connections are accepted but not connected upstream, until heal();
- heal(): bytes flow again, held ones first, and stalled connections go upstream.

With several upstreams a new connection goes to the first one that accepts it (a worker
behind the proxy reconnects to the survivor when one coordinator dies).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

CHUNK = 64 * 1024
CONNECT_TIMEOUT = 1.0


def _parse(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        raise ValueError(f"the fault proxy only forwards to 127.0.0.1, not {address!r}")
    return "127.0.0.1", int(port)


def _reset(writer: asyncio.StreamWriter | None) -> None:
    """Close with an RST: linger on, timeout 0, then close."""
    if writer is None:
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Pair:
    """One downstream connection and its upstream."""

    def __init__(self, down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter) -> None:
        self.down_r, self.down_w = down_r, down_w
        self.up_r: asyncio.StreamReader | None = None
        self.up_w: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[None]] = []

    def reset(self) -> None:
        for task in self.tasks:
            task.cancel()
        _reset(self.down_w)
        _reset(self.up_w)

    def close(self) -> None:
        for writer in (self.down_w, self.up_w):
            if writer is not None:
                writer.close()


class FaultProxy:
    """Listens on 127.0.0.1 (a free port) and forwards to the first upstream that answers."""

    def __init__(self, upstreams: Sequence[str]) -> None:
        if not upstreams:
            raise ValueError("the fault proxy needs at least one upstream")
        self.upstreams = [_parse(a) for a in upstreams]
        self.mode = "pass"
        self.port = 0
        #: connections reset by cut() (existing ones and those refused meanwhile)
        self.resets = 0
        #: connections accepted so far
        self.accepted = 0
        self._pairs: set[_Pair] = set()
        self._flowing: asyncio.Event | None = None
        self._server: asyncio.Server | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="fault-proxy")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        """Connections open now."""
        return len(self._pairs)

    # -- control (from any thread) -----------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        self._run(self._start())
        return self

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self._run(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def cut(self) -> None:
        """Reset every connection and refuse new ones until heal()."""
        self._run(self._set("cut"))

    def stall(self) -> None:
        """Stop forwarding (holding the bytes) until heal()."""
        self._run(self._set("stall"))

    def heal(self) -> None:
        """Let bytes flow again."""
        self._run(self._set("pass"))

    def set_upstreams(self, upstreams: Sequence[str]) -> None:
        """Where new connections go from now on."""
        self.upstreams = [_parse(a) for a in upstreams]

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # -- the loop ------------------------------------------------------------------------

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for pair in list(self._pairs):
            pair.reset()
        self._pairs.clear()

    async def _set(self, mode: str) -> None:
        assert self._flowing is not None
        self.mode = mode
        if mode == "pass":
            self._flowing.set()
            return
        self._flowing.clear()
        if mode == "cut":
            for pair in list(self._pairs):
                self.resets += 1
                pair.reset()
            self._pairs.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.mode == "cut":
            self.resets += 1
            _reset(writer)
            return
        pair = _Pair(reader, writer)
        self._pairs.add(pair)
        try:
            assert self._flowing is not None
            await self._flowing.wait()  # a stalled connection is not connected upstream yet
            if pair not in self._pairs or not await self._connect(pair):
                return
            if pair not in self._pairs:  # cut while the upstream connection was being made
                _reset(pair.up_w)
                return
            pair.tasks = [
                asyncio.create_task(self._pump(pair.down_r, pair.up_w)),  # type: ignore[arg-type]
                asyncio.create_task(self._pump(pair.up_r, pair.down_w)),  # type: ignore[arg-type]
            ]
            await asyncio.wait(pair.tasks, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pass
        finally:
            if pair in self._pairs:
                self._pairs.discard(pair)
                for task in pair.tasks:
                    task.cancel()
                pair.close()

    async def _connect(self, pair: _Pair) -> bool:
        for host, port in self.upstreams:
            try:
                pair.up_r, pair.up_w = await asyncio.wait_for(
                    asyncio.open_connection(host, port), CONNECT_TIMEOUT
                )
                return True
            except (OSError, TimeoutError):
                continue
        _reset(pair.down_w)
        return False

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction; while stalled, hold what was read (and read no more)."""
        assert self._flowing is not None
        with contextlib.suppress(OSError):
            while True:
                data = await reader.read(CHUNK)
                await self._flowing.wait()  # also holds an end of stream while stalled
                if not data:
                    return
                writer.write(data)
                await writer.drain()
