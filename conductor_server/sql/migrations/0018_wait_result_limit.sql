-- A wait's outcome (children's results, an event's or a signal's payload) is recorded as a
-- step of the waiting execution, and its lease carries every step. An outcome that would
-- take the execution's steps past --max-steps-bytes is recorded as an error of that wait
-- instead ({"too_large": {...}}, ResultTooLarge in the handler), so the execution stays
-- leasable and goes on (docs/limits.md, docs/workflows.md).

-- The limit, written by every coordinator when it starts (its --max-steps-bytes), so that
-- every writer of an outcome applies it: a coordinator's statements, the reaper, and
-- conductor_emit in an application's own transaction.
CREATE TABLE conductor_limits (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    max_steps_bytes bigint NOT NULL CHECK (max_steps_bytes > 0)
);
INSERT INTO conductor_limits (max_steps_bytes) VALUES (16777216);

-- Record a resolved wait's step and make its execution runnable if it waits (the wait's row
-- is already marked resolved by the caller, under the execution's row lock). Its step gets
-- its save order (0008's version left seq null, so a wait's outcome sorted before every step
-- and a rerun from any step copied it). An outcome
-- that, with the execution's other steps, passes the limit is replaced by what it measured.
CREATE OR REPLACE FUNCTION conductor_record_wait(p_execution bigint, p_step text,
    p_result jsonb, p_now timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    task_name text;
    outcome jsonb := p_result;
    outcome_bytes bigint := octet_length(p_result::text);
    other_bytes bigint;
    steps_limit bigint;
BEGIN
    SELECT max_steps_bytes INTO steps_limit FROM conductor_limits;
    SELECT coalesce(sum(octet_length(result::text)), 0) INTO other_bytes
    FROM conductor_steps WHERE execution_id = p_execution AND name <> p_step;
    IF steps_limit IS NOT NULL AND outcome_bytes + other_bytes > steps_limit THEN
        outcome := jsonb_build_object(
            'timeout', coalesce(p_result -> 'timeout', 'false'::jsonb),
            'too_large', jsonb_build_object('bytes', outcome_bytes,
                'steps_bytes', other_bytes, 'limit', steps_limit));
    END IF;
    -- seq: in save order with the steps around it (rerun from a step copies the earlier ones)
    INSERT INTO conductor_steps (execution_id, name, result, created_at, seq)
    VALUES (p_execution, p_step, outcome, p_now, nextval('conductor_steps_seq'))
    ON CONFLICT (execution_id, name) DO NOTHING;
    UPDATE conductor_executions SET waiting_for = NULL, run_at = p_now
    WHERE id = p_execution AND state = 'pending' AND waiting_for IS NOT NULL
    RETURNING task INTO task_name;
    IF task_name IS NOT NULL THEN
        PERFORM pg_notify('conductor_ready', task_name);
    END IF;
END
$$;
