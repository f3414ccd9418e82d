-- An event and a wait for it that are recorded at the same moment can no longer miss each
-- other. conductor_emit takes a shared lock per event name before it looks for open waits;
-- opening a wait for an event takes it exclusively, then looks back for a matching event
-- emitted since the wait began. Emits never wait for each other.
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
    -- Ordered with the opening of waits for this event (which take the lock exclusively):
    -- a wait whose transaction committed first is seen below; one opened after this
    -- transaction commits finds this event when it looks back (first_event_since).
    PERFORM pg_advisory_xact_lock_shared(hashtext('conductor_event'), hashtext(p_event));
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

-- The look-back of a newly opened wait: events by name and time.
CREATE INDEX conductor_events_by_name ON conductor_events (event, created_at);
-- Retention of events (retention_events): the oldest first.
CREATE INDEX conductor_events_created ON conductor_events (created_at);
