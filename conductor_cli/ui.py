"""`conductor ui`: the web dashboard (conductor_ui), a client of a coordinator; and the
flags with which `conductor dev` serves it next to its own coordinator."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from conductor_worker import AsyncClient

from .connection import Reach, add_server_flags, client_settings
from .flags import UsageError, bounded_float, bounded_int, port

if TYPE_CHECKING:
    from conductor_ui import UIServer

    from .flags import Subcommands

#: seconds each coordinator call of the dashboard may take (retries included)
UI_CALL_TIMEOUT = 10.0


def add_ui(sub: Subcommands) -> None:
    ui = sub.add_parser("ui", help="serve the web dashboard for a coordinator")
    add_server_flags(ui)
    ui.add_argument("--host", default=os.environ.get("CONDUCTOR_UI_HOST", "127.0.0.1"),
                    help="address to listen on (default: $CONDUCTOR_UI_HOST or 127.0.0.1); "
                    "anything but loopback needs --login-token-file")
    ui.add_argument("--port", type=port, default=int(os.environ.get("CONDUCTOR_UI_PORT", 8080)),
                    help="port to listen on; 0 picks a free one (default 8080)")
    add_login_flag(ui)
    ui.add_argument("--refresh", type=bounded_float(0.05, 60), default=0.5,
                    help="seconds between looks at the coordinator for live updates "
                    "(default 0.5)")
    ui.add_argument("--page-size", type=bounded_int(1, 1000), default=50,
                    help="executions per page of the list (default 50)")
    ui.set_defaults(run=run_ui)


def add_login_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--login-token-file",
        default=os.environ.get("CONDUCTOR_UI_LOGIN_TOKEN_FILE"),
        help="file holding the token people (and scripts, as a bearer token) log in to the "
        "dashboard with (default: $CONDUCTOR_UI_LOGIN_TOKEN_FILE; required beyond loopback)",
    )


def login_token(path: str | None) -> str | None:
    if not path:
        return None
    try:
        token = Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or exc
        raise UsageError(f"--login-token-file: cannot read {path}: {why}") from exc
    if not token:
        raise UsageError(f"--login-token-file: {path} is empty")
    return token


def ui_server(
    address: str, host: str, ui_port: int, reach: Reach, *, login: str | None,
    refresh: float = 0.5, page_size: int = 50,
) -> UIServer:
    """The dashboard for the coordinator at `address` (not started yet)."""
    from conductor_ui import UIServer, UISettings
    from conductor_ui.settings import UISettingsError

    def client() -> AsyncClient:
        return AsyncClient(address, timeout=UI_CALL_TIMEOUT, token=reach.token,
                           tls_ca=reach.tls_ca, tls_cert=reach.tls_cert, tls_key=reach.tls_key)

    try:
        settings = UISettings(client=client, host=host, port=ui_port, login_token=login,
                              refresh_seconds=refresh, page_size=page_size)
        return UIServer(settings)
    except UISettingsError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"--port: cannot listen on {host}:{ui_port}: {exc.strerror}") from None


def run_ui(args: argparse.Namespace) -> int:
    server = ui_server(args.server, args.host, args.port, client_settings(args),
                       login=login_token(args.login_token_file), refresh=args.refresh,
                       page_size=args.page_size)
    print(f"conductor ui: dashboard on {server.url} for the coordinator at {args.server}; "
          "Ctrl-C stops", flush=True)
    server.run()
    return 0
