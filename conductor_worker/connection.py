"""How clients and workers reach a coordinator: address, bearer token and TLS.

Everything can come from the environment: CONDUCTOR_SERVER, CONDUCTOR_AUTH_TOKEN,
CONDUCTOR_TLS_CA (turns TLS on; the CA that signed the coordinator's certificate),
CONDUCTOR_CLIENT_TLS_CERT and CONDUCTOR_CLIENT_TLS_KEY (a client certificate, when the
coordinator asks
for one). Set CONDUCTOR_TLS=1 to use TLS with the system's trusted roots.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import grpc

DEFAULT_SERVER = "127.0.0.1:50051"
MAX_MESSAGE = 64 * 1024 * 1024
#: milliseconds between HTTP/2 keepalive pings, and how long a ping may go unanswered (the
#: coordinator allows pings this often: conductor_server.app.KEEPALIVE_OPTIONS)
KEEPALIVE_TIME_MS = 10_000
KEEPALIVE_TIMEOUT_MS = 5_000


def _path(value: str | Path | None) -> Path | None:
    return Path(value) if value else None


@dataclass(frozen=True)
class Connection:
    """Where and how to connect."""

    address: str = DEFAULT_SERVER
    token: str | None = field(default=None, repr=False)
    tls: bool = False
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @classmethod
    def resolve(
        cls,
        address: str | None = None,
        *,
        token: str | None = None,
        tls_ca: str | Path | None = None,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
    ) -> Connection:
        """Arguments win over CONDUCTOR_* variables, which win over defaults."""
        env = os.environ
        ca = _path(tls_ca) or _path(env.get("CONDUCTOR_TLS_CA"))
        cert = _path(tls_cert) or _path(env.get("CONDUCTOR_CLIENT_TLS_CERT"))
        key = _path(tls_key) or _path(env.get("CONDUCTOR_CLIENT_TLS_KEY"))
        if (cert is None) != (key is None):
            raise ValueError("a client certificate needs both tls_cert and tls_key")
        return cls(
            address=address or env.get("CONDUCTOR_SERVER") or DEFAULT_SERVER,
            token=token or env.get("CONDUCTOR_AUTH_TOKEN") or None,
            tls=bool(ca or cert or env.get("CONDUCTOR_TLS", "") not in ("", "0")),
            tls_ca=ca,
            tls_cert=cert,
            tls_key=key,
        )

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def credentials(self) -> grpc.ChannelCredentials | None:
        if not self.tls:
            return None
        return grpc.ssl_channel_credentials(
            root_certificates=self.tls_ca.read_bytes() if self.tls_ca else None,
            private_key=self.tls_key.read_bytes() if self.tls_key else None,
            certificate_chain=self.tls_cert.read_bytes() if self.tls_cert else None,
        )

    def _options(self) -> list[tuple[str, int]]:
        return [
            ("grpc.max_send_message_length", MAX_MESSAGE),
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            # HTTP/2 keepalive: a connection that died without a reset (a stalled network, a
            # frozen peer) fails within KEEPALIVE_TIME + KEEPALIVE_TIMEOUT instead of never.
            ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
            ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
        ]

    def channel(self) -> grpc.Channel:
        credentials = self.credentials()
        if credentials is None:
            return grpc.insecure_channel(self.address, options=self._options())
        return grpc.secure_channel(self.address, credentials, options=self._options())

    def aio_channel(self) -> grpc.aio.Channel:
        credentials = self.credentials()
        if credentials is None:
            return grpc.aio.insecure_channel(self.address, options=self._options())
        return grpc.aio.secure_channel(self.address, credentials, options=self._options())
