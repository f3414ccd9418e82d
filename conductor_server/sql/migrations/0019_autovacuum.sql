-- Vacuum the churning tables early. Every execution's row is written three or more times
-- (invoke, lease, end; retention deletes it), so its dead versions pile up fast; with
-- PostgreSQL's defaults autovacuum waits until a fifth of a table is dead, by which time a
-- queue of a million rows carries 200,000 dead ones that every lease and index scan steps
-- over, and the table and its indexes grow before the space is reused (S9 saw the
-- executions table creep from 86 to 130 MiB at a steady live size). These settings start a
-- vacuum once about 2% of the rows (at least 1,000) changed, and let it run without the
-- default 2 ms naps, so the tables stay near their live size. They are storage parameters of
-- these tables only; the server's own settings and other tables are untouched, and an
-- operator can change them with ALTER TABLE ... SET / RESET.
ALTER TABLE conductor_executions SET (
    autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0
);
ALTER TABLE conductor_steps SET (
    autovacuum_vacuum_scale_factor = 0.05, autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0
);
ALTER TABLE conductor_attempts SET (
    autovacuum_vacuum_scale_factor = 0.05, autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0
);
ALTER TABLE conductor_events SET (
    autovacuum_vacuum_scale_factor = 0.05, autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0
);
ALTER TABLE conductor_waits SET (
    autovacuum_vacuum_scale_factor = 0.05, autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0
);
