-- Deleting executions removes their rows in other tables with one statement per table.
--
-- Until now steps, attempts, waits, signals and log lines referenced their execution with
-- ON DELETE CASCADE foreign keys. PostgreSQL enforces those with row triggers: deleting one
-- execution ran five cascade queries, and every step, attempt and log line written ran a
-- check query that also locked the execution's row. Retention deletes as many executions as
-- are created, so the cascades alone cost 13.5 us of database CPU per deleted execution
-- (18.0 us with two steps and an attempt), against 2.0 us (3.9 us) for the set-based delete
-- below (1,000 per statement, PostgreSQL 15; `python -m bench --only S9-delete`), and S9's
-- throughput with retention fell to 0.86 of plain S1.
--
-- conductor_delete_executions(ids) is now the one way executions are deleted: retention,
-- `conductor executions delete` and an operator's own SQL alike. It deletes the executions'
-- rows in every table that belongs to them, then the executions, and returns the ids it
-- deleted. The caller decides which executions may go (the coordinator deletes only final
-- ones) and should hold their row locks (SELECT ... FOR UPDATE), so that nothing is written
-- for them meanwhile. Without the foreign keys, every statement that writes a row of an
-- execution takes that execution's row lock first (save_steps, the state changes that
-- write attempts, the wait functions of 0008 and 0018, conductor_signal, and the log
-- insert, which now locks with FOR KEY SHARE): it waits for a delete in progress and then
-- finds the execution gone, so no row outlives its execution.
DO $$
DECLARE
    fk record;
BEGIN
    FOR fk IN
        SELECT conrelid::regclass AS owner, conname FROM pg_constraint
        WHERE contype = 'f' AND confrelid = 'conductor_executions'::regclass
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', fk.owner, fk.conname);
    END LOOP;
END
$$;

CREATE FUNCTION conductor_delete_executions(p_ids bigint[]) RETURNS SETOF bigint
LANGUAGE sql AS $$
    WITH steps AS (
        DELETE FROM conductor_steps WHERE execution_id = ANY(p_ids)
    ), attempts AS (
        DELETE FROM conductor_attempts WHERE execution_id = ANY(p_ids)
    ), waits AS (
        DELETE FROM conductor_waits WHERE execution_id = ANY(p_ids)
    ), signals AS (
        DELETE FROM conductor_signals WHERE execution_id = ANY(p_ids)
    ), logs AS (
        DELETE FROM conductor_execution_logs WHERE execution_id = ANY(p_ids)
    )
    DELETE FROM conductor_executions WHERE id = ANY(p_ids) RETURNING id
$$;
