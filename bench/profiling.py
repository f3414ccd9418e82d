"""py-spy during a scenario's measured window, and a plain-text summary of what it recorded.

`python -m bench --only S1 --profile DIR` attaches `py-spy record --format raw` to the
coordinator and to the worker (with its pool processes) while S1 drains, and writes
DIR/S1-coordinator.txt, DIR/S1-worker.txt (collapsed stacks) and DIR/S1-*.summary.txt.
Summarise any collapsed-stack file again with:

    python -m bench.profiling DIR/S1-coordinator.txt [--top 20]
"""

from __future__ import annotations

import argparse
import contextlib
import linecache
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

RATE = 100  # samples per second per process


@contextlib.contextmanager
def recording(
    directory: Path | None, label: str, pids: dict[str, int], native: bool = False
) -> Iterator[None]:
    """Record each pid (name -> pid) with py-spy while the block runs; nothing if no dir.
    `native` adds C frames (py-spy --native: slower, but shows where native time goes)."""
    if directory is None:
        yield
        return
    py_spy = str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        py_spy = shutil.which("py-spy") or "py-spy"
    directory.mkdir(parents=True, exist_ok=True)
    procs: list[tuple[str, Path, subprocess.Popen[bytes]]] = []
    for name, pid in pids.items():
        out = directory / f"{label}-{name}.txt"
        cmd = [
            py_spy, "record", "--pid", str(pid), "--rate", str(RATE), "--format", "raw",
            "--output", str(out),
        ]
        if name == "worker":
            cmd.append("--subprocesses")
        if native:
            cmd.append("--native")
        procs.append((name, out, subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                                  stderr=subprocess.DEVNULL)))
    time.sleep(1.0)  # py-spy needs a moment to attach
    started = time.monotonic()
    try:
        yield
    finally:
        seconds = time.monotonic() - started
        for _, _, proc in procs:
            proc.send_signal(signal.SIGINT)
        for name, out, proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
            if out.exists():
                text = summarise(out, seconds=seconds)
                (directory / f"{label}-{name}.summary.txt").write_text(text)


PROJECT = ("conductor_server/", "conductor_worker/")
ENTRY = ("conductor_cli/", "conductor_worker/__main__.py", "Worker.run ",
         "Worker.run_async ")
_LINE = re.compile(r"^(.*) (\d+)$")
_FRAME = re.compile(r"^(.*) \((.*?)(:\d+)?\)$")
#: Leaf frames that are a thread waiting (py-spy counts some of them as active).
WAITING = (
    "EpollSelector.select", "select (selectors.py)", "Connection._recv ", "Condition.wait ",
    "Event.wait ", "SimpleQueue.get", "Queue.get ", "sleep ", "wait_async ", "_recv_bytes",
)


_BLOCKING_CALL = re.compile(r"\.(get|recv|recv_bytes|wait|acquire|select|poll|join)\(|sleep\(")


def _is_waiting(leaf: str) -> bool:
    """Does the leaf frame wait? Known waiting functions, or a source line that calls a
    blocking method (py-spy shows a thread blocked in C code at its last Python line)."""
    if any(w in _frame_name(leaf) + " " for w in WAITING):
        return True
    match = _FRAME.match(leaf)
    if not match or not match.group(3):
        return False
    source = linecache.getline(match.group(2), int(match.group(3)[1:]))
    return bool(_BLOCKING_CALL.search(source))


def _frame_name(frame: str, line: bool = False) -> str:
    """'lease (/x/conductor_server/store.py:160)' -> 'lease (conductor_server/store.py)'
    (with ':160' too if `line`)."""
    match = _FRAME.match(frame)
    if not match:
        return frame
    function, where, number = match.groups()
    for marker in ("site-packages/", "/lib/python3."):
        if marker in where:
            where = where.split(marker, 1)[1]
            if marker == "/lib/python3.":
                where = where.split("/", 1)[-1]
            break
    else:
        where = where.split("/main/", 1)[-1]
    return f"{function} ({where}{number if line and number else ''})"


def _process_name(frame: str) -> str:
    """'process 123:"python -m bench.worker ..."' -> a short label."""
    pid = frame.split(":", 1)[0].removeprefix("process ")
    if "spawn_main" in frame:
        return f"pool process {pid}"
    command = frame.split('"', 2)[1] if '"' in frame else frame
    return f"{command.split(' -m ', 1)[-1][:60]} ({pid})"


class _Tally:
    def __init__(self) -> None:
        self.own: Counter[str] = Counter()
        self.inclusive: Counter[str] = Counter()
        self.total = 0
        self.waiting = 0


def summarise(path: Path, top: int = 15, seconds: float | None = None) -> str:
    """Top functions by own and inclusive samples, per process, among samples that are not
    a thread waiting (blocked in select/recv/a lock; shown separately)."""
    tallies: dict[str, _Tally] = {}
    for line in path.read_text().splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        frames, count = match.group(1).split(";"), int(match.group(2))
        processes = [f for f in frames if f.startswith("process ")]
        process = _process_name(processes[-1]) if processes else "process"
        frames = [f for f in frames if not f.startswith(("process ", "thread ")) and f.strip()]
        names = [_frame_name(f) for f in frames]
        tally = tallies.setdefault(process, _Tally())
        tally.total += count
        if not names or _is_waiting(frames[-1]):
            tally.waiting += count
            continue
        tally.own[_frame_name(frames[-1], line=True)] += count
        for name in set(names):
            tally.inclusive[name] += count
    out = [f"# {path.name}: py-spy at {RATE} Hz"]
    for process, tally in sorted(tallies.items(), key=lambda kv: -kv[1].total):
        busy = tally.total - tally.waiting
        if busy <= 0:
            continue
        share = f" (~{busy / RATE / seconds:.0%} of one core)" if seconds else ""
        out.append(
            f"\n## {process}: {tally.total} samples, {busy} busy{share},"
            f" {tally.waiting} waiting in select/recv/locks"
        )
        out.append("top by own time, leaf line (share of busy samples):")
        out += [f"  {n / busy:6.1%}  {name}" for name, n in tally.own.most_common(top)]
        out.append("top by inclusive time (share of busy samples):")
        out += [f"  {n / busy:6.1%}  {name}" for name, n in tally.inclusive.most_common(top)]
        ours = [(name, n) for name, n in tally.inclusive.most_common()
                if any(m in name for m in PROJECT) and not any(m in name for m in ENTRY)]
        out.append("Conductor's own functions by inclusive time (share of busy samples):")
        out += [f"  {n / busy:6.1%}  {name}" for name, n in ours[:top]]
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description="Summarise a py-spy --format raw file.")
    parser.add_argument("path", type=Path)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    print(summarise(args.path, args.top), end="")


if __name__ == "__main__":
    main()
