"""The flags that reach a coordinator (--server, TLS, token) and the Client they make."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from conductor_worker import Client

from .flags import UsageError, auth_token


def add_server_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        default=os.environ.get("CONDUCTOR_SERVER", "127.0.0.1:50051"),
        help="coordinator address host:port (default: $CONDUCTOR_SERVER or 127.0.0.1:50051)",
    )
    parser.add_argument("--tls-ca", help="CA of the coordinator's certificate; turns TLS on "
                        "(default: $CONDUCTOR_TLS_CA)")
    parser.add_argument("--tls-cert", help="client certificate, if the coordinator asks for one")
    parser.add_argument("--tls-key", help="key of the client certificate")
    parser.add_argument("--auth-token-file",
                        help="file holding the bearer token (default: $CONDUCTOR_AUTH_TOKEN)")


@dataclass(frozen=True)
class Reach:
    """How to reach the coordinator: its bearer token and TLS files (None: not used)."""

    token: str | None
    tls_ca: str | None
    tls_cert: str | None
    tls_key: str | None


def client_settings(args: argparse.Namespace) -> Reach:
    """The token and TLS files the flags name, checked."""
    for flag, path in (("--tls-ca", args.tls_ca), ("--tls-cert", args.tls_cert),
                       ("--tls-key", args.tls_key)):
        if path is not None and not Path(path).is_file():
            raise UsageError(f"{flag}: {path} is not a readable file")
    if (args.tls_cert is None) != (args.tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    return Reach(auth_token(args), args.tls_ca, args.tls_cert, args.tls_key)


def client(args: argparse.Namespace, timeout: float = 30.0) -> Client:
    """A Client of the coordinator the flags name; `timeout`: seconds each call (and its
    retries while the coordinator is unreachable) may take."""
    reach = client_settings(args)
    return Client(args.server, timeout=timeout, token=reach.token, tls_ca=reach.tls_ca,
                  tls_cert=reach.tls_cert, tls_key=reach.tls_key)
