"""What refused and stalled requests make the coordinator hold: peak RSS of a `conductor
server` process under (a) Invokes of 60 MB with a valid token, refused for their size, and
(b) 60 MB bodies from callers without a token that never finish.

    .venv/bin/python -m bench.hostile_memory [--database-url URL] [--source DIR]

--source runs the coordinator from another checkout (e.g. `git archive` of an older commit)
to compare. Figures: docs/limits.md.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import psycopg
from psycopg.conninfo import make_conninfo

from conductor.v1 import client_pb2

BIG = 60 * 1024 * 1024
TOKEN = "bench-token"
ROOT = Path(__file__).resolve().parent.parent


def _rss(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines() if ":" in line)
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def _server(url: str, source: Path, token_file: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONPATH": str(source)}
    process = subprocess.Popen(
        [sys.executable, "-m", "conductor_worker", "--log-level", "ERROR", "server",
         "--database-url", url, "--port", "0", "--auth-token-file", str(token_file)],
        cwd=source, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    for line in process.stdout:
        match = re.search(r"listening on (\S+)", line)
        if match:
            threading.Thread(target=process.stdout.read, daemon=True).start()
            return process, match.group(1)
    raise RuntimeError("the coordinator did not start")


def _refused_invokes(address: str, count: int) -> dict[str, int]:
    payload = '"' + "x" * BIG + '"'
    codes: dict[str, int] = {}
    with grpc.insecure_channel(address, options=[("grpc.max_send_message_length", -1)]) as ch:
        invoke = ch.unary_unary("/conductor.v1.ConductorService/Invoke",
                                request_serializer=client_pb2.InvokeRequest.SerializeToString,
                                response_deserializer=client_pb2.InvokeResponse.FromString)

        def one(_: int) -> str:
            try:
                invoke(client_pb2.InvokeRequest(task="t", payload_json=payload), timeout=60,
                       metadata=[("authorization", f"Bearer {TOKEN}")])
                return "OK"
            except grpc.RpcError as exc:
                return exc.code().name

        with ThreadPoolExecutor(4) as pool:
            for code in pool.map(one, range(count)):
                codes[code] = codes.get(code, 0) + 1
    return codes


def _stalled_bodies(address: str, count: int, hold: float) -> None:
    """Streams without a token that send 60 MB and never half-close, held for `hold` s."""
    chunk = client_pb2.InvokeRequest(task="t", payload_json='"' + "y" * BIG + '"')
    stop = threading.Event()

    def requests() -> Iterator[client_pb2.InvokeRequest]:
        yield chunk
        stop.wait()

    channels = [grpc.insecure_channel(address, options=[("grpc.max_send_message_length", -1)])
                for _ in range(count)]
    calls = [ch.stream_unary("/conductor.v1.ConductorService/Invoke",
                             request_serializer=client_pb2.InvokeRequest.SerializeToString,
                             response_deserializer=client_pb2.InvokeResponse.FromString)
             .future(requests(), timeout=hold + 30) for ch in channels]
    time.sleep(hold)
    stop.set()
    for call in calls:
        call.cancel()
    for ch in channels:
        ch.close()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hostile_memory")
    parser.add_argument("--database-url", default=os.environ.get("CONDUCTOR_DATABASE_URL"),
                        required="CONDUCTOR_DATABASE_URL" not in os.environ)
    parser.add_argument("--source", type=Path, default=ROOT)
    parser.add_argument("--invokes", type=int, default=125)
    args = parser.parse_args()
    name = f"conductor_mem_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    token = Path(tempfile.mkdtemp()) / "token"
    token.write_text(TOKEN)
    process, address = _server(make_conninfo(args.database_url, dbname=name), args.source,
                               token)
    try:
        idle = _rss(process.pid)
        print(f"idle: {idle[0]:.0f} MiB")
        started = time.monotonic()
        codes = _refused_invokes(address, args.invokes)
        now, peak = _rss(process.pid)
        print(f"{args.invokes} Invokes of 60 MB with a token: {codes} in "
              f"{time.monotonic() - started:.1f} s; RSS {now:.0f} MiB, peak {peak:.0f} MiB")
        before = now
        _stalled_bodies(address, 4, hold=5.0)
        now, peak = _rss(process.pid)
        print(f"4 stalled 60 MB bodies without a token (held 5 s): RSS {before:.0f} -> "
              f"{now:.0f} MiB, peak {peak:.0f} MiB")
    finally:
        process.terminate()
        process.wait(30)
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
