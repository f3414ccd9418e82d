-- Tell other coordinators which executions finished, so that their WaitExecution callers wake.
-- One notification per call: the ids, or '*' when they do not fit in one payload (waiters
-- then re-check). Returns how many ids were named.
CREATE FUNCTION conductor_notify_finished(ids bigint[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    payload text := array_to_string(ids, ',');
BEGIN
    IF payload IS NULL OR payload = '' THEN
        RETURN 0;
    END IF;
    PERFORM pg_notify('conductor_finished',
        CASE WHEN length(payload) <= 7900 THEN payload ELSE '*' END);
    RETURN cardinality(ids);
END
$$;
