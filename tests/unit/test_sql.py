"""conductor_server.sql: named queries used by the store, clock-only time, migrations."""

from __future__ import annotations

import re
from itertools import pairwise
from pathlib import Path

import conductor_server
from conductor_server import store
from conductor_server.sql import QUERIES, migrations

STORE_SOURCE = (Path(conductor_server.__file__).parent / "store.py").read_text()
_Q_CALL = re.compile(r"""_q\(\s*["'](\w+)["']\s*\)""")
# Database-side clocks: time must come from the coordinator's injectable clock instead.
_DB_CLOCK = re.compile(
    r"\b(now|clock_timestamp|statement_timestamp|transaction_timestamp|timeofday)\s*\(|"
    r"\b(current_timestamp|current_date|current_time|localtimestamp|localtime)\b",
    re.IGNORECASE,
)


def used_query_names() -> set[str]:
    names = set(_Q_CALL.findall(STORE_SOURCE))
    names.update(store._OUTCOME_QUERY.values())  # _q(_OUTCOME_QUERY[kind])
    return names


def test_store_uses_many_queries() -> None:
    # Guards against the regex silently matching nothing.
    assert len(set(_Q_CALL.findall(STORE_SOURCE))) >= 20
    assert {"complete", "fail", "release"} <= set(store._OUTCOME_QUERY.values())


def test_every_query_used_by_store_exists() -> None:
    missing = sorted(used_query_names() - QUERIES.keys())
    assert missing == []


def test_queries_are_non_empty_sql_without_comments() -> None:
    for name, text in QUERIES.items():
        assert text.strip(), name
        assert not text.rstrip().endswith(";"), name
        assert not any(line.startswith("--") for line in text.splitlines()), name


def test_no_query_reads_the_database_clock() -> None:
    offenders = {name for name, text in QUERIES.items() if _DB_CLOCK.search(text)}
    # The only exception: the default of the migrations ledger's applied_at column.
    assert offenders == {"create_migrations_table"}
    ledger = QUERIES["create_migrations_table"]
    assert len(_DB_CLOCK.findall(ledger)) == 1
    assert re.search(r"applied_at\s+timestamptz\s+NOT NULL\s+DEFAULT\s+now\(\)", ledger)


def test_db_clock_pattern_catches_now() -> None:
    assert _DB_CLOCK.search("UPDATE x SET t = NOW ()")
    assert _DB_CLOCK.search("WHERE t < current_timestamp")
    assert not _DB_CLOCK.search("WHERE run_at <= %(now)s")


def test_migrations_are_numbered_from_one_in_order() -> None:
    found = migrations()
    versions = [m.version for m in found]
    assert versions, "no migrations found"
    assert versions[0] == 1
    assert all(a < b for a, b in pairwise(versions))
    for m in found:
        assert m.name
        assert m.sql.strip()
