-- Execution timeouts and dead letters (issue #15, items 1 and 7).
--
-- A task's timeout (seconds, null: none) and an invoke's override of it; `deadline` is when
-- the coordinator ends the current attempt for good, set at lease time in real time (the
-- clock leases expire by) and cleared when the attempt ends. Past it, no step save or
-- completion of that attempt is recorded, and the reaper fails the attempt as `Timeout`.
ALTER TABLE conductor_tasks ADD COLUMN timeout double precision
    CHECK (timeout IS NULL OR timeout > 0);
ALTER TABLE conductor_executions ADD COLUMN timeout double precision
    CHECK (timeout IS NULL OR timeout > 0);
ALTER TABLE conductor_executions ADD COLUMN deadline timestamptz;
-- The reaper's look-up of attempts past their deadline.
CREATE INDEX conductor_executions_deadline
    ON conductor_executions (deadline) WHERE state = 'running' AND deadline IS NOT NULL;

-- Dead letters: a task's on_failure names the task that gets one execution per execution of
-- it that fails for good, created by the trigger below in the very transaction that records
-- the failure (so exactly once, whichever statement, coordinator or restart did it). The
-- dead letter's own failures are not dead-lettered again (dead_letter_of is set).
ALTER TABLE conductor_tasks ADD COLUMN on_failure text;
ALTER TABLE conductor_executions ADD COLUMN dead_letter_of bigint;
CREATE INDEX conductor_executions_dead_letter_of
    ON conductor_executions (dead_letter_of) WHERE dead_letter_of IS NOT NULL;

CREATE FUNCTION conductor_dead_letter() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    target text;
BEGIN
    SELECT on_failure INTO target FROM conductor_tasks WHERE name = NEW.task;
    IF target IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO conductor_executions (task, queue, payload, priority, run_at, created_at,
        max_attempts, dead_letter_of, trace_context)
    SELECT target, 'default',
        jsonb_build_object('execution_id', NEW.id::text, 'task', NEW.task,
            'payload', NEW.payload, 'error', NEW.error, 'attempts', NEW.attempt,
            'failed_at', NEW.finished_at),
        NEW.priority, coalesce(NEW.finished_at, now()), coalesce(NEW.finished_at, now()),
        coalesce((SELECT max_attempts FROM conductor_tasks WHERE name = target), 3), NEW.id,
        NEW.trace_context;
    PERFORM pg_notify('conductor_ready', target);
    RETURN NULL;
END
$$;

CREATE TRIGGER conductor_dead_letter AFTER UPDATE OF state ON conductor_executions
FOR EACH ROW
WHEN (NEW.state = 'failed' AND OLD.state IS DISTINCT FROM 'failed'
      AND NEW.dead_letter_of IS NULL)
EXECUTE FUNCTION conductor_dead_letter();
