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
