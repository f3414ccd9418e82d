"""Migration 0019: the churning tables vacuum early (storage parameters of those tables)."""

from __future__ import annotations


def _options(db, table: str) -> dict[str, str]:
    row = db.execute("SELECT reloptions FROM pg_class WHERE relname = %s", (table,)).fetchone()
    return dict(option.split("=", 1) for option in (row[0] or []))


def test_the_executions_table_vacuums_after_two_percent(db):
    options = _options(db, "conductor_executions")
    assert options["autovacuum_vacuum_scale_factor"] == "0.02"
    assert options["autovacuum_vacuum_cost_delay"] == "0"


def test_every_churning_table_has_its_settings_and_no_other_does(db):
    tuned = {r[0] for r in db.execute(
        "SELECT relname FROM pg_class WHERE relkind = 'r' AND relname LIKE 'conductor%%'"
        " AND reloptions IS NOT NULL").fetchall()}
    assert tuned == {"conductor_executions", "conductor_steps", "conductor_attempts",
                     "conductor_events", "conductor_waits"}


def test_vacuum_keeps_the_churning_tables_pages(db):
    """Migration 0021: no vacuum truncates a churning table (that takes its ACCESS EXCLUSIVE
    lock, which stalls every lease); its emptied pages stay for the next inserts."""
    for table in ("conductor_executions", "conductor_steps", "conductor_attempts",
                  "conductor_events", "conductor_waits"):
        assert _options(db, table)["vacuum_truncate"] == "false", table


def test_a_vacuum_after_the_table_emptied_leaves_its_size(db):
    db.execute("INSERT INTO conductor_tasks (name, max_attempts, initial_backoff, max_backoff,"
               " backoff_multiplier, backoff_jitter, registered_at)"
               " VALUES ('vacuum-size', 3, 1, 60, 2, 0, now())")
    db.execute("INSERT INTO conductor_executions (task, payload, run_at, created_at,"
               " max_attempts) SELECT 'vacuum-size', to_jsonb(g), now(), now(), 3"
               " FROM generate_series(1, 5000) AS g")
    db.execute("SELECT conductor_delete_executions(array_agg(id)) FROM conductor_executions"
               " WHERE task = 'vacuum-size'")
    size = db.execute("SELECT pg_relation_size('conductor_executions')").fetchone()[0]
    assert size > 0
    db.execute("VACUUM conductor_executions")
    after = db.execute("SELECT pg_relation_size('conductor_executions')").fetchone()[0]
    assert after == size
    db.execute("VACUUM (TRUNCATE) conductor_executions")
    shrunk = db.execute("SELECT pg_relation_size('conductor_executions')").fetchone()[0]
    assert shrunk < size
