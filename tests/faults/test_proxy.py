"""The fault proxy itself, against a plain echo server on 127.0.0.1."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from tests.faults.proxy import FaultProxy

pytestmark = pytest.mark.timeout(60)

#: how long a test holds a fault before checking that nothing got through
HOLD = 0.3


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


class EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Echo)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[FaultProxy]:
    with FaultProxy([echo.address]) as p:
        yield p


def connect(proxy: FaultProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    sock.settimeout(5)
    return sock


def receive(sock: socket.socket, size: int) -> bytes:
    got = b""
    while len(got) < size:
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def roundtrip(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    return receive(sock, len(data))


def assert_refused(proxy: FaultProxy) -> None:
    """A new connection is reset (the reset may already show when connect() returns)."""
    # ConnectionResetError or ConnectionRefusedError
    with pytest.raises(ConnectionError), connect(proxy) as sock:
        sock.recv(1)


def nothing_arrives(sock: socket.socket, seconds: float = HOLD) -> bool:
    """True if no byte (and no end of stream) arrives within `seconds`."""
    sock.settimeout(seconds)
    try:
        sock.recv(1)
    except TimeoutError:
        return True
    finally:
        sock.settimeout(5)
    return False


def test_pass_forwards_both_ways(proxy: FaultProxy) -> None:
    with connect(proxy) as sock:
        assert roundtrip(sock, b"hello") == b"hello"
        big = bytes(range(256)) * 4096  # 1 MiB, several chunks
        assert roundtrip(sock, big) == big


def test_only_loopback_upstreams() -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        FaultProxy(["10.0.0.1:80"])


def test_cut_resets_open_connections_and_refuses_new_ones(proxy: FaultProxy) -> None:
    sock = connect(proxy)
    assert roundtrip(sock, b"x") == b"x"
    proxy.cut()
    with pytest.raises(ConnectionResetError):
        sock.recv(1)
    sock.close()
    assert_refused(proxy)
    assert proxy.resets == 2
    proxy.heal()
    with connect(proxy) as again:
        assert roundtrip(again, b"back") == b"back"


def test_cut_resets_the_upstream_side_too(echo: EchoServer) -> None:
    """The upstream peer sees its connection end when the proxy cuts."""
    ended = threading.Event()

    class Watch(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            try:
                while self.request.recv(65536):
                    pass
            except ConnectionResetError:
                pass
            ended.set()

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Watch)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with FaultProxy([f"127.0.0.1:{server.server_address[1]}"]) as p:
            sock = connect(p)
            sock.sendall(b"x")
            deadline = time.monotonic() + 5
            while p.connections == 0 or p.accepted == 0:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            p.cut()
            assert ended.wait(5), "the upstream side did not see the cut"
            sock.close()
    finally:
        server.shutdown()
        server.server_close()


def test_stall_holds_bytes_both_ways_then_heal_delivers_them(proxy: FaultProxy) -> None:
    sock = connect(proxy)
    assert roundtrip(sock, b"a") == b"a"
    proxy.stall()
    sock.sendall(b"held")
    assert nothing_arrives(sock)
    proxy.heal()
    assert receive(sock, 4) == b"held"
    sock.close()


def test_stall_holds_a_closing_peer(proxy: FaultProxy) -> None:
    """A peer that closes during a stall is not passed on until heal (a blackhole)."""
    sock = connect(proxy)
    assert roundtrip(sock, b"a") == b"a"
    proxy.stall()
    sock.shutdown(socket.SHUT_WR)  # our end of stream is held by the proxy
    assert nothing_arrives(sock)
    proxy.heal()
    assert sock.recv(1) == b""  # now the echo handler sees EOF and the close comes back
    sock.close()


def test_new_connections_during_a_stall_wait_for_heal(proxy: FaultProxy) -> None:
    proxy.stall()
    sock = connect(proxy)  # accepted ...
    sock.sendall(b"early")
    assert nothing_arrives(sock)  # ... but not forwarded
    proxy.heal()
    assert receive(sock, 5) == b"early"
    sock.close()


@pytest.fixture
def dead_address() -> Iterator[str]:
    """A port that is bound but never listens: connections to it are refused."""
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    yield f"127.0.0.1:{dead.getsockname()[1]}"
    dead.close()


def test_new_connections_go_to_the_first_upstream_that_answers(
    echo: EchoServer, dead_address: str
) -> None:
    with FaultProxy([dead_address, echo.address]) as p, connect(p) as sock:
        assert roundtrip(sock, b"failover") == b"failover"


def test_no_upstream_answering_resets_the_client(dead_address: str) -> None:
    with FaultProxy([dead_address]) as p:
        assert_refused(p)


def test_upstream_closing_closes_the_client(echo: EchoServer) -> None:
    closing = socket.socket()
    closing.bind(("127.0.0.1", 0))
    closing.listen()
    with FaultProxy([f"127.0.0.1:{closing.getsockname()[1]}"]) as p, connect(p) as sock:
        upstream, _ = closing.accept()
        upstream.close()
        assert sock.recv(1) == b""
    closing.close()
