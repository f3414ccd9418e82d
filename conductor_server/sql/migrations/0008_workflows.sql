-- Workflows (docs/workflows.md): child executions, durable waits (for children, a signal or
-- an event), signals, events and event subscriptions.
--
-- A wait is a row of conductor_waits. While one is open (not resolved), a release of its
-- execution (running -> pending) makes the execution wait: waiting_for is set and run_at is
-- the wait's deadline (or far away), so no lease takes it. Resolving a wait records its step
-- and makes a waiting execution runnable at once, with a NOTIFY on conductor_ready that every
-- coordinator listens to. Lock order, everywhere: the execution's row, then its waits.

ALTER TABLE conductor_executions
    ADD COLUMN parent_id bigint,
    ADD COLUMN parent_step text,
    -- what a pending execution waits for: 'children:STEP', 'signal:STEP' or 'event:STEP'
    ADD COLUMN waiting_for text;

CREATE INDEX conductor_executions_parent
    ON conductor_executions (parent_id, parent_step, id) WHERE parent_id IS NOT NULL;

CREATE TABLE conductor_waits (
    execution_id bigint NOT NULL REFERENCES conductor_executions (id) ON DELETE CASCADE,
    step text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('children', 'signal', 'event')),
    -- the signal's or the event's name (null for children)
    key text,
    -- equality filter on the event's payload: {"dotted.path": value, ...}
    match jsonb,
    -- children not yet final
    remaining integer NOT NULL DEFAULT 0,
    deadline timestamptz,
    created_at timestamptz NOT NULL,
    resolved boolean NOT NULL DEFAULT false,
    PRIMARY KEY (execution_id, step)
);

CREATE INDEX conductor_waits_open ON conductor_waits (execution_id) WHERE NOT resolved;
CREATE INDEX conductor_waits_events ON conductor_waits (key) WHERE kind = 'event' AND NOT resolved;

-- Signals sent to an execution, kept until it is deleted (a wait takes the first by name).
CREATE TABLE conductor_signals (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    execution_id bigint NOT NULL REFERENCES conductor_executions (id) ON DELETE CASCADE,
    name text NOT NULL,
    payload jsonb NOT NULL DEFAULT 'null',
    created_at timestamptz NOT NULL
);

CREATE INDEX conductor_signals_execution ON conductor_signals (execution_id, name, id);

-- Tasks that run on an event (@task(on=...)), written at registration.
CREATE TABLE conductor_subscriptions (
    task text NOT NULL REFERENCES conductor_tasks (name) ON DELETE CASCADE,
    event text NOT NULL,
    filter jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (task, event)
);

CREATE INDEX conductor_subscriptions_event ON conductor_subscriptions (event);

-- Emitted events; a dedupe key is used once.
CREATE TABLE conductor_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event text NOT NULL,
    payload jsonb NOT NULL DEFAULT 'null',
    dedupe_key text UNIQUE,
    -- the executions it created (what a repeated emit with its dedupe key answers)
    execution_ids bigint[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL
);

-- Does the payload match the filter? Every key is a dotted path into the payload whose value
-- must equal the filter's value (jsonb equality); an empty or null filter matches everything.
CREATE FUNCTION conductor_matches(payload jsonb, filter jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT filter IS NULL OR jsonb_typeof(filter) <> 'object' OR NOT EXISTS (
        SELECT 1 FROM jsonb_each(filter) f
        WHERE payload #> string_to_array(f.key, '.') IS DISTINCT FROM f.value)
$$;

-- Notify a channel of ids, in payloads under pg_notify's limit.
CREATE FUNCTION conductor_notify_ids(channel text, ids bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    n integer := coalesce(cardinality(ids), 0);
    i integer := 1;
BEGIN
    WHILE i <= n LOOP
        PERFORM pg_notify(channel, array_to_string(ids[i:i + 399], ','));
        i := i + 400;
    END LOOP;
END
$$;

-- What the children of one step came to, in creation (payload) order.
CREATE FUNCTION conductor_children_outcome(p_parent bigint, p_step text, p_timeout boolean)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('timeout', p_timeout, 'children', coalesce(jsonb_agg(
        jsonb_build_object('id', id::text, 'state', state::text, 'result', result,
            'error', error - 'traceback') ORDER BY id), '[]'::jsonb))
    FROM conductor_executions WHERE parent_id = p_parent AND parent_step = p_step
$$;

-- Cancel the unfinished children of an execution (of one step, or all when p_step is null):
-- pending ones at once, running ones flagged (their workers are told by conductor_cancel).
-- Their own children follow through the cascade trigger below.
CREATE FUNCTION conductor_cancel_children(p_parent bigint, p_step text, p_now timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    finished bigint[];
    running bigint[];
BEGIN
    WITH c AS (
        UPDATE conductor_executions
        SET state = CASE WHEN state = 'pending' THEN 'cancelled' ELSE state END
                ::conductor_execution_state,
            cancel_requested = (state = 'running'),
            finished_at = CASE WHEN state = 'pending' THEN p_now ELSE finished_at END
        WHERE parent_id = p_parent AND (p_step IS NULL OR parent_step = p_step)
            AND state IN ('pending', 'running')
        RETURNING id, state
    )
    SELECT array_agg(id) FILTER (WHERE state = 'cancelled'),
        array_agg(id) FILTER (WHERE state = 'running')
    INTO finished, running FROM c;
    PERFORM conductor_notify_ids('conductor_finished', finished);
    PERFORM conductor_notify_ids('conductor_cancel', running);
END
$$;

-- Record a resolved wait's step and make its execution runnable if it waits (the wait's row
-- is already marked resolved by the caller, under the execution's row lock).
CREATE FUNCTION conductor_record_wait(p_execution bigint, p_step text, p_result jsonb,
    p_now timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    task_name text;
BEGIN
    INSERT INTO conductor_steps (execution_id, name, result, created_at)
    VALUES (p_execution, p_step, p_result, p_now)
    ON CONFLICT (execution_id, name) DO NOTHING;
    UPDATE conductor_executions SET waiting_for = NULL, run_at = p_now
    WHERE id = p_execution AND state = 'pending' AND waiting_for IS NOT NULL
    RETURNING task INTO task_name;
    IF task_name IS NOT NULL THEN
        PERFORM pg_notify('conductor_ready', task_name);
    END IF;
END
$$;

-- Resolve an open wait with a result; false if it was resolved already.
CREATE FUNCTION conductor_resolve_wait(p_execution bigint, p_step text, p_result jsonb,
    p_now timestamptz) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM conductor_executions WHERE id = p_execution FOR UPDATE;
    UPDATE conductor_waits SET resolved = true
    WHERE execution_id = p_execution AND step = p_step AND NOT resolved;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM conductor_record_wait(p_execution, p_step, p_result, p_now);
    RETURN true;
END
$$;

-- Resolve an open wait whose deadline has passed as timed out ({"timeout": true}, with the
-- children's outcomes for a child wait, whose unfinished children are cancelled first).
CREATE FUNCTION conductor_timeout_wait(p_execution bigint, p_step text, p_now timestamptz)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    wait_kind text;
BEGIN
    PERFORM 1 FROM conductor_executions WHERE id = p_execution FOR UPDATE;
    UPDATE conductor_waits SET resolved = true
    WHERE execution_id = p_execution AND step = p_step AND NOT resolved AND deadline <= p_now
    RETURNING kind INTO wait_kind;
    IF wait_kind IS NULL THEN
        RETURN false;
    END IF;
    IF wait_kind = 'children' THEN
        PERFORM conductor_cancel_children(p_execution, p_step, p_now);
        PERFORM conductor_record_wait(p_execution, p_step,
            conductor_children_outcome(p_execution, p_step, true), p_now);
    ELSE
        PERFORM conductor_record_wait(p_execution, p_step, '{"timeout": true}', p_now);
    END IF;
    RETURN true;
END
$$;

-- A release or retry (running -> pending) of an execution with an open wait makes it wait.
CREATE FUNCTION conductor_enter_wait() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    w record;
BEGIN
    SELECT step, kind, deadline INTO w FROM conductor_waits
    WHERE execution_id = NEW.id AND NOT resolved
    ORDER BY deadline NULLS LAST
    LIMIT 1
    FOR UPDATE;
    IF FOUND THEN
        NEW.waiting_for := w.kind || ':' || w.step;
        NEW.run_at := coalesce(w.deadline, '9000-01-01 00:00:00+00'::timestamptz);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER conductor_enter_wait BEFORE UPDATE OF state ON conductor_executions
FOR EACH ROW WHEN (OLD.state = 'running' AND NEW.state = 'pending')
EXECUTE FUNCTION conductor_enter_wait();

-- A waiting execution that is leased (its deadline came) or finished no longer waits.
CREATE FUNCTION conductor_leave_wait() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.waiting_for := NULL;
    RETURN NEW;
END
$$;

CREATE TRIGGER conductor_leave_wait BEFORE UPDATE OF state ON conductor_executions
FOR EACH ROW WHEN (OLD.waiting_for IS NOT NULL AND NEW.state <> 'pending')
EXECUTE FUNCTION conductor_leave_wait();

-- A child reached a final state: count it off its parent's wait, and resolve the wait with
-- every child's outcome when it was the last one.
CREATE FUNCTION conductor_child_finished() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    left_over integer;
    at timestamptz := coalesce(NEW.finished_at, now());
BEGIN
    PERFORM 1 FROM conductor_executions WHERE id = NEW.parent_id FOR UPDATE;
    UPDATE conductor_waits SET remaining = remaining - 1
    WHERE execution_id = NEW.parent_id AND step = NEW.parent_step AND NOT resolved
    RETURNING remaining INTO left_over;
    IF left_over IS NOT NULL AND left_over <= 0 THEN
        UPDATE conductor_waits SET resolved = true
        WHERE execution_id = NEW.parent_id AND step = NEW.parent_step;
        PERFORM conductor_record_wait(NEW.parent_id, NEW.parent_step,
            conductor_children_outcome(NEW.parent_id, NEW.parent_step, false), at);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER conductor_child_finished AFTER UPDATE OF state ON conductor_executions
FOR EACH ROW WHEN (NEW.parent_id IS NOT NULL AND OLD.state IN ('pending', 'running')
    AND NEW.state IN ('succeeded', 'failed', 'cancelled'))
EXECUTE FUNCTION conductor_child_finished();

-- Cancelling an execution cancels its unfinished descendants.
CREATE FUNCTION conductor_cancel_cascade() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM conductor_cancel_children(NEW.id, NULL, coalesce(NEW.finished_at, now()));
    RETURN NULL;
END
$$;

CREATE TRIGGER conductor_cancel_cascade AFTER UPDATE OF state, cancel_requested
ON conductor_executions
FOR EACH ROW WHEN ((NEW.state = 'cancelled' AND OLD.state <> 'cancelled')
    OR (NEW.cancel_requested AND NOT OLD.cancel_requested))
EXECUTE FUNCTION conductor_cancel_cascade();

-- Emit an event: one execution per subscribed task whose filter matches, and the open waits
-- for it that match are resolved, all in the caller's transaction (so an application's own
-- transaction, or a trigger in it, emits exactly when it commits). A dedupe key already used
-- emits nothing and returns what its first emit created. Returns the ids of the executions
-- created. Runs with its owner's rights:
-- grant EXECUTE to the roles that may emit (docs/workflows.md).
CREATE FUNCTION conductor_emit(p_event text, p_payload jsonb DEFAULT 'null',
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
            max_attempts)
        SELECT s.task, 'default', body, 0, at, at, t.max_attempts
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

REVOKE EXECUTE ON FUNCTION conductor_emit(text, jsonb, text, timestamptz) FROM PUBLIC;

-- Send a signal: kept for the execution, and it resolves the open wait for it. Returns the
-- execution's state (null: no such execution); a finished execution gets nothing.
CREATE FUNCTION conductor_signal(p_execution bigint, p_name text, p_payload jsonb,
    p_now timestamptz) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    current text;
    w record;
BEGIN
    SELECT state::text INTO current FROM conductor_executions WHERE id = p_execution FOR UPDATE;
    IF current IS NULL OR current IN ('succeeded', 'failed', 'cancelled') THEN
        RETURN current;
    END IF;
    INSERT INTO conductor_signals (execution_id, name, payload, created_at)
    VALUES (p_execution, p_name, coalesce(p_payload, 'null'::jsonb), p_now);
    FOR w IN
        SELECT step FROM conductor_waits
        WHERE execution_id = p_execution AND kind = 'signal' AND key = p_name AND NOT resolved
    LOOP
        PERFORM conductor_resolve_wait(p_execution, w.step,
            jsonb_build_object('signal', coalesce(p_payload, 'null'::jsonb)), p_now);
    END LOOP;
    RETURN current;
END
$$;
