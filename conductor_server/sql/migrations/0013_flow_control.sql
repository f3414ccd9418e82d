-- Flow control (docs/flow-control.md): per-key concurrency, rate limits, default queues,
-- queue routing of workers, throttled invokes.
--
-- Plain tasks pay nothing for this: their executions have no concurrency_key (NULL), so the
-- two new partial indexes never hold their rows, and their leases use the same statement
-- as before.

ALTER TABLE conductor_tasks
    ADD COLUMN key_path text[],
    ADD COLUMN key_concurrency integer NOT NULL DEFAULT 0 CHECK (key_concurrency >= 0),
    ADD COLUMN rate_limit_name text,
    ADD COLUMN rate_limit_count integer NOT NULL DEFAULT 0 CHECK (rate_limit_count >= 0),
    ADD COLUMN rate_limit_period double precision NOT NULL DEFAULT 0
        CHECK (rate_limit_period >= 0),
    ADD COLUMN queue text NOT NULL DEFAULT 'default';

-- The execution's key: InvokeOptions.concurrency_key, or the task's key field read from the
-- payload at invoke; '' for an execution of a keyed task that has none (limited only by the
-- task's global cap); NULL for executions of tasks without a key.
ALTER TABLE conductor_executions ADD COLUMN concurrency_key text;

-- Keyed leasing: the pending keys of a task (a skip scan), and each key's ready work.
-- "state < 'running'" is "pending" (the enum's first value), written so that only this index
-- matches the keyed lease's conditions: with stale statistics (a task's rows just inserted)
-- the planner otherwise drove the skip scan from conductor_executions_ready, visiting every
-- pending row of the task once per key.
CREATE INDEX conductor_executions_keyed_ready
    ON conductor_executions (task, concurrency_key, priority DESC, run_at, id)
    WHERE state < 'running' AND concurrency_key IS NOT NULL;
-- Keyed leasing: running executions per key.
CREATE INDEX conductor_executions_keyed_running
    ON conductor_executions (task, concurrency_key)
    WHERE state = 'running' AND concurrency_key IS NOT NULL;

-- Token buckets of rate limits, one per (limit name, key) ('' for a limit without keys).
-- tokens as of updated_at; it refills at count/period per second up to count. paused_until:
-- a handler raised RateLimited(retry_after); nothing is leased under it before then.
CREATE TABLE conductor_rate_buckets (
    name text NOT NULL,
    key text NOT NULL DEFAULT '',
    tokens double precision NOT NULL,
    updated_at timestamptz NOT NULL,
    paused_until timestamptz,
    PRIMARY KEY (name, key)
);

-- The queues a connected worker takes work from (NULL: every queue).
ALTER TABLE conductor_workers ADD COLUMN queues text[];

-- Throttled invokes: the execution the first invoke of a window created, per (task, key).
CREATE TABLE conductor_throttles (
    task text NOT NULL,
    key text NOT NULL,
    execution_id bigint NOT NULL,
    until timestamptz NOT NULL,
    PRIMARY KEY (task, key)
);
CREATE INDEX conductor_throttles_until ON conductor_throttles (until);

-- The key of a new execution of a task: NULL for a task without keys; for a keyed one, the
-- text at its key path in the payload (at most 200 characters), or '' when there is none.
CREATE FUNCTION conductor_key(p_keyed boolean, p_path text[], p_payload jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN NOT p_keyed THEN NULL
        WHEN p_path IS NULL OR cardinality(p_path) = 0 THEN ''
        ELSE coalesce(left(p_payload #>> p_path, 200), '') END
$$;

-- Events create executions in their task's default queue, with their key (as 0008 otherwise).
CREATE OR REPLACE FUNCTION conductor_emit(p_event text, p_payload jsonb DEFAULT 'null',
    p_dedupe_key text DEFAULT NULL, p_now timestamptz DEFAULT NULL) RETURNS bigint[]
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    at timestamptz := coalesce(p_now, now());
    body jsonb := coalesce(p_payload, 'null'::jsonb);
    event_id bigint;
    ids bigint[];
    tasks text[];
    task_name text;
    w record;
BEGIN
    IF p_event IS NULL OR p_event !~ '^[A-Za-z0-9_.:-]{1,200}$' THEN
        RAISE EXCEPTION 'conductor_emit: event must be 1-200 characters of A-Z a-z 0-9 _ . : -'
            USING ERRCODE = '22023';
    END IF;
    INSERT INTO conductor_events (event, payload, dedupe_key, created_at)
    VALUES (p_event, body, p_dedupe_key, at)
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING id INTO event_id;
    IF event_id IS NULL THEN
        RETURN (SELECT execution_ids FROM conductor_events WHERE dedupe_key = p_dedupe_key);
    END IF;
    WITH created AS (
        INSERT INTO conductor_executions (task, queue, payload, priority, run_at, created_at,
            max_attempts, concurrency_key)
        SELECT s.task, t.queue, body, 0, at, at, t.max_attempts,
            conductor_key(t.key_path IS NOT NULL OR t.key_concurrency > 0, t.key_path, body)
        FROM conductor_subscriptions s JOIN conductor_tasks t ON t.name = s.task
        WHERE s.event = p_event AND conductor_matches(body, s.filter)
        ORDER BY s.task
        RETURNING id, task
    )
    SELECT array_agg(id ORDER BY id), array_agg(DISTINCT task) INTO ids, tasks FROM created;
    IF ids IS NOT NULL THEN
        UPDATE conductor_events SET execution_ids = ids WHERE id = event_id;
    END IF;
    FOREACH task_name IN ARRAY coalesce(tasks, '{}') LOOP
        PERFORM pg_notify('conductor_ready', task_name);
    END LOOP;
    FOR w IN
        SELECT execution_id, step FROM conductor_waits
        WHERE kind = 'event' AND key = p_event AND NOT resolved AND created_at <= at
            AND (deadline IS NULL OR deadline > at) AND conductor_matches(body, match)
        ORDER BY execution_id
    LOOP
        PERFORM conductor_resolve_wait(w.execution_id, w.step,
            jsonb_build_object('event', body), at);
    END LOOP;
    RETURN coalesce(ids, '{}');
END
$$;
