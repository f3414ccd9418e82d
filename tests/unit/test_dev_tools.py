"""The pieces of `conductor dev --reload`, `executions watch` and the coordinator's intake of
log lines that need no sockets."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from conductor.v1 import worker_pb2
from conductor_cli.reload import changed, snapshot, watched_folder
from conductor_cli.watch import watch
from conductor_server.sessions import Session
from conductor_server.settings import Settings
from conductor_server.worker_service import log_line_from_pb
from conductor_worker import Execution


def test_snapshot_sees_python_files_only_and_skips_caches(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text("x = 1\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "more.py").write_text("")
    (tmp_path / "notes.txt").write_text("")
    for skipped in ("__pycache__", ".venv", ".git"):
        (tmp_path / skipped).mkdir()
        (tmp_path / skipped / "x.py").write_text("")
    before = snapshot(tmp_path)
    assert sorted(Path(p).relative_to(tmp_path).as_posix() for p in before) == [
        "pkg/more.py", "tasks.py"]
    assert changed(before, snapshot(tmp_path)) == []
    later = os.stat(tmp_path / "tasks.py").st_mtime + 5
    os.utime(tmp_path / "tasks.py", (later, later))
    (tmp_path / "pkg" / "more.py").unlink()
    (tmp_path / "new.py").write_text("")
    assert [Path(p).name for p in changed(before, snapshot(tmp_path))] == [
        "new.py", "more.py", "tasks.py"]


def test_the_watched_folder_is_the_module_s_own(tmp_path: Path) -> None:
    assert watched_folder(str(tmp_path / "pkg" / "__init__.py")) == (tmp_path / "pkg").resolve()
    assert watched_folder(None) == Path.cwd()


def _execution(eid: str, state: str, attempt: int = 1) -> Execution:
    return Execution(id=eid, task="t", state=state, attempt=attempt, max_attempts=3,
                     payload=None, result=None, error=None, priority=0, queue="",
                     created_at=None, run_at=None, started_at=None, finished_at=None,
                     dedupe_key=None, cancel_requested=False)


def test_watch_prints_a_line_per_change_and_follows_executions_off_the_page() -> None:
    pages = [
        [_execution("2", "pending"), _execution("1", "running")],
        [_execution("2", "running"), _execution("1", "running")],
        [_execution("3", "pending"), _execution("2", "running")],  # 1 fell off the page
        [_execution("3", "pending"), _execution("2", "succeeded")],
    ]
    singles = {"1": [_execution("1", "running", 2), _execution("1", "failed", 3)]}
    lines: list[str] = []
    watch(lambda: pages.pop(0), lambda eid: singles[eid].pop(0), 0, lines.append, rounds=4)
    shown = [line.split("  ", 1)[1] for line in lines]
    assert shown == [
        "1  t  running  attempt 1/3", "2  t  pending  attempt 1/3",
        "2  t  running  attempt 1/3",
        "3  t  pending  attempt 1/3", "1  t  running  attempt 2/3",
        "2  t  succeeded  attempt 1/3", "1  t  failed  attempt 3/3",
    ]


def _line(execution_id: str, message: str = "hi", level: str = "INFO") -> worker_pb2.LogLine:
    line = worker_pb2.LogLine(execution_id=execution_id, attempt=2, level=level,
                              message=message)
    line.logged_at.FromSeconds(1_700_000_000)
    return line


def test_log_lines_are_kept_only_for_executions_the_worker_holds_and_cut() -> None:
    session = Session("w", {}, {}, inflight={7: "t"})
    settings = Settings(max_log_line_bytes=10)
    now = datetime(2030, 1, 1, tzinfo=UTC)
    kept = log_line_from_pb(_line("7", "x" * 50, "INFO\x00" * 10), session, settings, now)
    assert kept is not None
    assert (kept.execution_id, kept.attempt) == (7, 2)
    assert kept.message == "x" * 10 + " [truncated]"
    assert "\x00" not in kept.level and len(kept.level) < 40
    assert kept.logged_at == datetime.fromtimestamp(1_700_000_000, UTC)
    assert log_line_from_pb(_line("8"), session, settings, now) is None  # not held here
    assert log_line_from_pb(_line("seven"), session, settings, now) is None
    undated = worker_pb2.LogLine(execution_id="7", message="m")
    assert log_line_from_pb(undated, session, settings, now).logged_at == now  # type: ignore[union-attr]
