"""The dashboard's settings in one frozen object, checked where they are made."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass

from conductor_worker import AsyncClient

#: seconds between two looks at the coordinator for a page's live updates
DEFAULT_REFRESH = 0.5


class UISettingsError(ValueError):
    """A setting cannot be used; the message names the option."""


@dataclass(frozen=True)
class UISettings:
    """Where the dashboard listens, how it reaches its coordinator, and who may use it.

    `login_token`: what a browser (or a script, as a bearer token) must present; required
    when `host` is not a loopback address. `client`: makes the AsyncClient the dashboard
    uses (inside its event loop), with the coordinator's address, TLS and token."""

    client: Callable[[], AsyncClient]
    host: str = "127.0.0.1"
    port: int = 8080
    login_token: str | None = None
    refresh_seconds: float = DEFAULT_REFRESH
    page_size: int = 50

    def __post_init__(self) -> None:
        if self.login_token is not None and len(self.login_token) < 16:
            raise UISettingsError("--login-token-file: the token must be at least 16 characters")
        if self.login_token is None and not is_loopback(self.host):
            raise UISettingsError(
                f"--login-token-file: required when --host is not a loopback address "
                f"({self.host!r} can be reached from other machines)"
            )
        if not 0.05 <= self.refresh_seconds <= 60:
            raise UISettingsError("--refresh: must be 0.05..60 seconds")
        if not 1 <= self.page_size <= 1000:
            raise UISettingsError("--page-size: must be 1..1000")


def is_loopback(host: str) -> bool:
    """True when every address `host` names is a loopback address (127.0.0.0/8, ::1)."""
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError) as exc:
        raise UISettingsError(f"--host: cannot use {host[:100]!r}: {exc}") from exc
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)
