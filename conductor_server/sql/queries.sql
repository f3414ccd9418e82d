-- Every SQL statement the coordinator runs, by name. Loaded by conductor_server/sql/__init__.py;
-- called only from conductor_server/store.py. Parameters use psycopg's %(name)s style.
-- Times always come from the coordinator's clock (%(now)s), never from now(), so that tests
-- can move time.

-- name: create_migrations_table
-- The ledger of applied migrations.
CREATE TABLE IF NOT EXISTS conductor_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: lock_migrations
-- Serialise coordinators that start at the same time (held until the transaction ends).
SELECT pg_advisory_xact_lock(hashtext('conductor_migrations'));

-- name: applied_migrations
-- Versions already applied.
SELECT version FROM conductor_migrations ORDER BY version;

-- name: record_migration
-- Mark one migration applied.
INSERT INTO conductor_migrations (version, name) VALUES (%(version)s, %(name)s);

-- name: set_limits
-- The coordinator's limits that the database applies itself (migration 0018): the step
-- results one execution may hold, which bounds the outcome recorded for a wait.
UPDATE conductor_limits SET max_steps_bytes = %(max_steps_bytes)s;

-- name: upsert_task
-- Create or replace a task definition (the newest registration wins).
INSERT INTO conductor_tasks (name, max_attempts, initial_backoff, max_backoff,
    backoff_multiplier, backoff_jitter, non_retryable_errors, window_start, window_end,
    timezone, concurrency, registered_at, retention_succeeded, retention_failed,
    retention_cancelled, redact_after, timeout, on_failure, key_path, key_concurrency,
    rate_limit_name, rate_limit_count, rate_limit_period, queue)
VALUES (%(name)s, %(max_attempts)s, %(initial_backoff)s, %(max_backoff)s,
    %(backoff_multiplier)s, %(backoff_jitter)s, %(non_retryable_errors)s, %(window_start)s,
    %(window_end)s, %(timezone)s, %(concurrency)s, %(now)s, %(retention_succeeded)s,
    %(retention_failed)s, %(retention_cancelled)s, %(redact_after)s, %(timeout)s,
    %(on_failure)s, %(key_path)s, %(key_concurrency)s, %(rate_limit_name)s,
    %(rate_limit_count)s, %(rate_limit_period)s, %(queue)s)
ON CONFLICT (name) DO UPDATE SET
    max_attempts = EXCLUDED.max_attempts, initial_backoff = EXCLUDED.initial_backoff,
    max_backoff = EXCLUDED.max_backoff, backoff_multiplier = EXCLUDED.backoff_multiplier,
    backoff_jitter = EXCLUDED.backoff_jitter,
    non_retryable_errors = EXCLUDED.non_retryable_errors,
    window_start = EXCLUDED.window_start, window_end = EXCLUDED.window_end,
    timezone = EXCLUDED.timezone, concurrency = EXCLUDED.concurrency,
    registered_at = EXCLUDED.registered_at,
    retention_succeeded = EXCLUDED.retention_succeeded,
    retention_failed = EXCLUDED.retention_failed,
    retention_cancelled = EXCLUDED.retention_cancelled, redact_after = EXCLUDED.redact_after,
    timeout = EXCLUDED.timeout, on_failure = EXCLUDED.on_failure,
    key_path = EXCLUDED.key_path, key_concurrency = EXCLUDED.key_concurrency,
    rate_limit_name = EXCLUDED.rate_limit_name, rate_limit_count = EXCLUDED.rate_limit_count,
    rate_limit_period = EXCLUDED.rate_limit_period, queue = EXCLUDED.queue;

-- name: get_task
-- One task definition.
SELECT name, max_attempts, initial_backoff, max_backoff, backoff_multiplier, backoff_jitter,
    non_retryable_errors, window_start, window_end, timezone, concurrency, timeout, on_failure,
    key_path, key_concurrency, rate_limit_name, rate_limit_count, rate_limit_period, queue
FROM conductor_tasks WHERE name = %(name)s;

-- name: insert_executions
-- Many executions of one task, ids ascending in payload order. With a request id (claimed
-- earlier in the same transaction) its record gets the ids too, without sending them back
-- and forth; without one (null) the update matches nothing.
WITH created AS (
    INSERT INTO conductor_executions (task, queue, payload, priority, run_at, created_at,
        max_attempts, trace_context, timeout, concurrency_key)
    SELECT %(task)s, %(queue)s, u.payload::jsonb, %(priority)s, %(run_at)s, %(now)s,
        %(max_attempts)s, %(trace_context)s, %(timeout)s,
        coalesce(%(concurrency_key)s::text,
        conductor_key(%(keyed)s, %(key_path)s::text[], u.payload::jsonb))
    FROM unnest(%(payloads)s::text[]) WITH ORDINALITY AS u(payload, n)
    ORDER BY u.n
    RETURNING id
), recorded AS (
    UPDATE conductor_invoke_requests
    SET execution_ids = (SELECT array_agg(id ORDER BY id) FROM created)
    WHERE request_id = %(request_id)s
)
SELECT id FROM created;

-- name: insert_deduped_execution
-- One execution with a dedupe key; no row when an unfinished one holds the key.
INSERT INTO conductor_executions (task, queue, payload, priority, run_at, created_at,
    max_attempts, dedupe_key, trace_context, timeout, concurrency_key)
VALUES (%(task)s, %(queue)s, %(payload)s::jsonb, %(priority)s, %(run_at)s, %(now)s,
    %(max_attempts)s, %(dedupe_key)s, %(trace_context)s, %(timeout)s,
    coalesce(%(concurrency_key)s::text,
        conductor_key(%(keyed)s, %(key_path)s::text[], %(payload)s::jsonb)))
ON CONFLICT (task, dedupe_key) WHERE dedupe_key IS NOT NULL AND state IN ('pending', 'running')
DO NOTHING
RETURNING id;

-- name: debounce_execution
-- Debounce: the pending holder of a dedupe key takes the newest invoke's payload (and key)
-- and waits again from now; no row when no pending execution holds the key.
UPDATE conductor_executions SET payload = %(payload)s::jsonb, run_at = %(run_at)s,
    priority = %(priority)s, queue = %(queue)s,
    concurrency_key = coalesce(%(concurrency_key)s::text,
        conductor_key(%(keyed)s, %(key_path)s::text[], %(payload)s::jsonb))
WHERE task = %(task)s AND dedupe_key = %(dedupe_key)s AND state = 'pending'
    AND waiting_for IS NULL AND runs = 0
RETURNING id;

-- name: claim_throttle
-- Throttle: claim the window of (task, key) unless an earlier invoke holds it; no row: it
-- does (read its execution with throttled_execution). A concurrent claim waits for this
-- transaction. Deletes up to two expired windows of other keys on the way (bounded table).
WITH expired AS (
    DELETE FROM conductor_throttles WHERE (task, key) IN (
        SELECT task, key FROM conductor_throttles
        WHERE until <= %(now)s AND NOT (task = %(task)s AND key = %(dedupe_key)s)
        ORDER BY until LIMIT 2 FOR UPDATE SKIP LOCKED)
)
INSERT INTO conductor_throttles (task, key, execution_id, until)
VALUES (%(task)s, %(dedupe_key)s, 0, %(until)s)
ON CONFLICT (task, key) DO UPDATE SET until = EXCLUDED.until, execution_id = 0
    WHERE conductor_throttles.until <= %(now)s
RETURNING task;

-- name: record_throttle
-- The execution of a claimed throttle window.
UPDATE conductor_throttles SET execution_id = %(execution_id)s
WHERE task = %(task)s AND key = %(dedupe_key)s;

-- name: throttled_execution
-- The execution the window's first invoke created (or found).
SELECT execution_id FROM conductor_throttles WHERE task = %(task)s AND key = %(dedupe_key)s;

-- name: insert_deduped_batch
-- The items of an InvokeBatch that carry dedupe keys, one per distinct key (the first item
-- with it), inserted in the order given (the caller sorts them by key, so that concurrent
-- batches with common keys wait for each other in one order and cannot deadlock); no row
-- for a key an unfinished execution holds (find_deduped_batch reads those).
INSERT INTO conductor_executions (task, queue, payload, priority, run_at, created_at,
    max_attempts, dedupe_key, trace_context, timeout, concurrency_key)
SELECT %(task)s, %(queue)s, u.payload::jsonb, %(priority)s, %(run_at)s, %(now)s,
    %(max_attempts)s, u.dedupe_key, %(trace_context)s, %(timeout)s,
    coalesce(%(concurrency_key)s::text,
        conductor_key(%(keyed)s, %(key_path)s::text[], u.payload::jsonb))
FROM unnest(%(payloads)s::text[], %(dedupe_keys)s::text[]) WITH ORDINALITY
    AS u(payload, dedupe_key, n)
ORDER BY u.n
ON CONFLICT (task, dedupe_key) WHERE dedupe_key IS NOT NULL AND state IN ('pending', 'running')
DO NOTHING
RETURNING dedupe_key, id;

-- name: find_deduped_batch
-- The unfinished executions holding these dedupe keys.
SELECT dedupe_key, id FROM conductor_executions
WHERE task = %(task)s AND dedupe_key = ANY(%(dedupe_keys)s::text[])
    AND state IN ('pending', 'running');

-- name: find_deduped_execution
-- The unfinished execution holding a dedupe key.
SELECT id FROM conductor_executions
WHERE task = %(task)s AND dedupe_key = %(dedupe_key)s AND state IN ('pending', 'running');

-- name: claim_invoke_request
-- Claim a request id for this invoke's transaction; no row: the id is taken (read the first
-- call's answer with get_invoke_request). A concurrent claim of the same id waits until this
-- transaction ends. On the way, deletes up to two records older than the retention, so the
-- table stays bounded by the keyed invokes of one retention period without a separate job.
WITH expired AS (
    DELETE FROM conductor_invoke_requests WHERE request_id IN (
        SELECT request_id FROM conductor_invoke_requests
        WHERE created_at < %(expired_before)s AND request_id <> %(request_id)s
        ORDER BY created_at LIMIT 2 FOR UPDATE SKIP LOCKED)
)
INSERT INTO conductor_invoke_requests (request_id, task, size, created_at)
VALUES (%(request_id)s, %(task)s, %(size)s, %(now)s)
ON CONFLICT (request_id) DO NOTHING
RETURNING request_id;

-- name: record_invoke_request
-- The answer of a deduped invoke (or of a batch with dedupe keys, with its per-item flags;
-- else null) that claimed a request id, for its retries (same transaction;
-- insert_executions records its own ids).
UPDATE conductor_invoke_requests SET execution_ids = %(ids)s, created = %(created)s,
    created_items = %(created_items)s::boolean[]
WHERE request_id = %(request_id)s;

-- name: get_invoke_request
-- What the first call with a request id was and answered.
SELECT task, size, execution_ids, created, created_items FROM conductor_invoke_requests
WHERE request_id = %(request_id)s;

-- name: notify_ready
-- Wake the dispatchers of every coordinator: work for this task may be ready.
SELECT pg_notify('conductor_ready', %(task)s);

-- name: notify
-- Send a notification (payload: comma-separated ids) to other coordinators.
SELECT pg_notify(%(channel)s, %(payload)s);

-- name: lease
-- Lease up to %(limit)s ready executions of one task to one worker, with their saved steps.
-- With a concurrency cap (%(cap)s > 0) no more than that many run in all: run it after
-- lock_capped_task in one transaction, so that the count sees every lease committed before
-- (without a cap the count is never evaluated). An attempt with a timeout (the execution's
-- override, else the task's %(task_timeout)s) gets its deadline: the grant in real time
-- (%(lease_now)s) plus the timeout plus %(grace)s seconds.
WITH picked AS (
    SELECT id FROM conductor_executions
    WHERE state = 'pending' AND task = %(task)s AND run_at <= %(now)s
        AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
    ORDER BY priority DESC, run_at, id
    LIMIT CASE WHEN %(cap)s > 0 THEN least(%(limit)s, greatest(0, %(cap)s - (
        SELECT count(*) FROM conductor_executions WHERE state = 'running' AND task = %(task)s)))
        ELSE %(limit)s END
    FOR UPDATE SKIP LOCKED
)
UPDATE conductor_executions e
SET state = 'running', attempt = e.attempt + 1, lease_token = gen_random_uuid(),
    lease_expires_at = %(expires_at)s, worker_id = %(worker_id)s, lease_unstarted = false,
    started_at = coalesce(e.started_at, %(now)s), runs = e.runs + 1, leased_at = %(now)s,
    deadline = %(lease_now)s::timestamptz + make_interval(secs =>
        coalesce(e.timeout, %(task_timeout)s::double precision) + %(grace)s)
-- By primary key, whatever the statistics say (docs/history.md, "Statistics that say
-- empty"): joined to picked, a table analyzed while empty was scanned whole.
WHERE e.id = ANY(ARRAY(SELECT id FROM picked))
RETURNING e.id, e.lease_token, e.attempt, e.max_attempts, e.payload::text,
    (SELECT json_object_agg(s.name, s.result::text) FROM conductor_steps s
     WHERE s.execution_id = e.id)::text AS steps, e.schedule, e.fire_time, e.run_at, e.priority,
    e.trace_context, coalesce(e.timeout, %(task_timeout)s::double precision);

-- name: lease_keyed
-- Lease up to %(limit)s ready executions of a keyed task (per-key cap %(key_cap)s > 0, or a
-- rate limit per key): at most %(key_cap)s running per key (the key '' is no key: only the
-- global %(cap)s applies to it), and per key no more than its rate bucket holds tokens
-- (%(rated)s; a paused bucket holds none). The keys come from a skip scan of the keyed
-- index, one probe per distinct pending key, so a hot key does not hide the others behind it.
-- Run after lock_capped_task (and lock_rate_bucket) in one transaction: those serialise the
-- leases of the task (and of the bucket) across coordinators, so the counts and tokens read
-- here see every lease committed before, and no overshoot is possible. Returns each lease's
-- key, to spend its tokens (spend_tokens). "state < 'running'" means pending: see the index
-- conductor_executions_keyed_ready (migration 0013).
WITH RECURSIVE keys(k) AS (
    (SELECT concurrency_key FROM conductor_executions
     WHERE state < 'running' AND task = %(task)s AND concurrency_key IS NOT NULL
     ORDER BY concurrency_key LIMIT 1)
    UNION ALL
    SELECT (SELECT e.concurrency_key FROM conductor_executions e
            WHERE e.state < 'running' AND e.task = %(task)s AND e.concurrency_key > keys.k
            ORDER BY e.concurrency_key LIMIT 1)
    FROM keys WHERE keys.k IS NOT NULL
), room AS (
    SELECT keys.k,
        CASE WHEN keys.k = '' OR %(key_cap)s = 0 THEN %(limit)s
            ELSE greatest(0, %(key_cap)s - (SELECT count(*) FROM conductor_executions r
                WHERE r.state = 'running' AND r.task = %(task)s AND r.concurrency_key = keys.k))
        END AS by_key,
        CASE WHEN NOT %(rated)s THEN %(limit)s
            WHEN b.paused_until > %(now)s THEN 0
            WHEN %(rate_count)s = 0 THEN %(limit)s
            ELSE floor(least(%(rate_count)s::float8, coalesce(b.tokens + %(rate_count)s
                / %(rate_period)s * extract(epoch FROM %(now)s - b.updated_at),
                %(rate_count)s::float8)))
        END AS by_rate
    FROM keys LEFT JOIN conductor_rate_buckets b ON b.name = %(bucket)s AND b.key = keys.k
    WHERE keys.k IS NOT NULL
), picked AS (
    SELECT c.id FROM (
        SELECT p.id, p.priority, p.run_at FROM room CROSS JOIN LATERAL (
            SELECT e.id, e.priority, e.run_at FROM conductor_executions e
            WHERE e.state < 'running' AND e.task = %(task)s AND e.concurrency_key = room.k
                AND e.run_at <= %(now)s
                AND (%(queues)s::text[] IS NULL OR e.queue = ANY(%(queues)s::text[]))
            ORDER BY e.priority DESC, e.run_at, e.id
            LIMIT least(room.by_key, room.by_rate)::bigint
        ) p
    ) c
    ORDER BY c.priority DESC, c.run_at, c.id
    LIMIT CASE WHEN %(cap)s > 0 THEN least(%(limit)s, greatest(0, %(cap)s - (
        SELECT count(*) FROM conductor_executions WHERE state = 'running' AND task = %(task)s)))
        ELSE %(limit)s END
)
UPDATE conductor_executions e
SET state = 'running', attempt = e.attempt + 1, lease_token = gen_random_uuid(),
    lease_expires_at = %(expires_at)s, worker_id = %(worker_id)s, lease_unstarted = false,
    started_at = coalesce(e.started_at, %(now)s), runs = e.runs + 1, leased_at = %(now)s,
    deadline = %(lease_now)s::timestamptz + make_interval(secs =>
        coalesce(e.timeout, %(task_timeout)s::double precision) + %(grace)s)
-- By primary key, and only if still pending (these rows are not locked: a cancel may have
-- ended one meanwhile; the update re-checks a row changed under it). The state is compared as
-- text so that the planner cannot drive this from the pending-rows index instead (with stale
-- statistics it did, visiting every pending row of the table).
WHERE e.id = ANY(ARRAY(SELECT id FROM picked)) AND e.state::text = 'pending'
RETURNING e.id, e.lease_token, e.attempt, e.max_attempts, e.payload::text,
    (SELECT json_object_agg(s.name, s.result::text) FROM conductor_steps s
     WHERE s.execution_id = e.id)::text AS steps, e.schedule, e.fire_time, e.run_at, e.priority,
    e.trace_context, coalesce(e.timeout, %(task_timeout)s::double precision), e.concurrency_key;

-- name: lock_rate_bucket
-- Serialise leases under one rate limit (shared by several tasks, maybe) across
-- coordinators until the end of the transaction.
SELECT pg_advisory_xact_lock(hashtext('conductor_rate'), hashtext(%(bucket)s));

-- name: bucket_tokens
-- Whole tokens a bucket holds now (the limit's count when it was never used; 0 while
-- paused; %(limit)s without a rate, for a pause only), and when its next token comes.
SELECT CASE WHEN b.paused_until > %(now)s THEN 0
        WHEN %(rate_count)s = 0 THEN %(limit)s
        ELSE floor(least(%(rate_count)s::float8, b.tokens + %(rate_count)s / %(rate_period)s
            * extract(epoch FROM %(now)s - b.updated_at))) END,
    b.paused_until
FROM conductor_rate_buckets b WHERE b.name = %(bucket)s AND b.key = %(key)s;

-- name: spend_tokens
-- Take tokens for the leases just granted, per key (refilled to now first).
INSERT INTO conductor_rate_buckets AS b (name, key, tokens, updated_at)
SELECT %(bucket)s, u.key, %(rate_count)s::float8 - u.n, %(now)s
FROM unnest(%(keys)s::text[], %(counts)s::int[]) AS u(key, n)
ON CONFLICT (name, key) DO UPDATE SET
    tokens = least(%(rate_count)s::float8, b.tokens + %(rate_count)s / %(rate_period)s
        * greatest(0, extract(epoch FROM %(now)s - b.updated_at))) - (%(rate_count)s::float8
        - EXCLUDED.tokens),
    updated_at = greatest(b.updated_at, %(now)s);

-- name: pause_buckets
-- Handlers raised RateLimited(retry_after): nothing is leased under the rate bucket of each
-- execution's task (of its key, for a keyed task) until then. Returns the bucket names.
INSERT INTO conductor_rate_buckets AS b (name, key, tokens, updated_at, paused_until)
SELECT DISTINCT ON (1, 2) coalesce(t.rate_limit_name, t.name),
    CASE WHEN t.key_path IS NOT NULL OR t.key_concurrency > 0
        THEN coalesce(e.concurrency_key, '') ELSE '' END,
    0, %(now)s, u.until
FROM unnest(%(ids)s::bigint[], %(untils)s::timestamptz[]) AS u(id, until)
JOIN conductor_executions e ON e.id = u.id AND e.id = ANY(%(ids)s::bigint[])
CROSS JOIN LATERAL (SELECT * FROM conductor_tasks t WHERE t.name = e.task OFFSET 0) t
ORDER BY 1, 2, u.until DESC
ON CONFLICT (name, key) DO UPDATE SET
    paused_until = greatest(b.paused_until, EXCLUDED.paused_until)
RETURNING b.name;

-- name: active_pauses
-- Buckets paused now (a coordinator that starts, or hears of a pause, reads them).
SELECT name, key, paused_until FROM conductor_rate_buckets WHERE paused_until > %(now)s;

-- name: backfill_keys
-- Pending executions of tasks registered as keyed that have no key yet (created before the
-- task had one) get it from their payload.
UPDATE conductor_executions e
SET concurrency_key = conductor_key(true, t.key_path, e.payload)
FROM conductor_tasks t
WHERE t.name = e.task AND e.task = ANY(%(tasks)s::text[]) AND e.state = 'pending'
    AND e.concurrency_key IS NULL;

-- name: lock_capped_task
-- Serialise leasing of a task with a concurrency cap across coordinators until the end of the
-- transaction (two-key form, so it cannot collide with the one-key locks above).
SELECT pg_advisory_xact_lock(hashtext('conductor_concurrency'), hashtext(%(task)s));

-- name: next_run_at
-- When the next pending execution of a task becomes ready (null when none is pending).
SELECT min(run_at) FROM conductor_executions WHERE state = 'pending' AND task = %(task)s;

-- name: ready_exists
-- Whether any execution of the tasks is runnable now (drain mode).
SELECT EXISTS (
    SELECT 1 FROM conductor_executions
    WHERE state = 'pending' AND task = ANY(%(tasks)s::text[]) AND run_at <= %(now)s
);

-- name: running_count
-- Executions of a task running now, for its concurrency cap.
SELECT count(*) FROM conductor_executions WHERE state = 'running' AND task = %(task)s;

-- name: renew_leases
-- This and the other by-id statements below name their rows by id = ANY(ids) and compare the
-- state as text: so neither a join to the ids nor the running-rows index can drive them when
-- the table's statistics are stale (docs/history.md, "Statistics that say empty").
-- Extend the leases a worker still holds; returns the ids that are still its own (by token,
-- and granted to that worker unless %(worker_id)s is ''). The worker is alive: whatever it
-- said was waiting before is its own business again (lease_unstarted cleared).
UPDATE conductor_executions e SET lease_expires_at = %(expires_at)s, lease_unstarted = false
FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[]) AS u(id, token)
WHERE e.id = u.id AND e.id = ANY(%(ids)s::bigint[]) AND e.lease_token = u.token
    AND e.state::text = 'running'
    AND (%(worker_id)s = '' OR e.worker_id = %(worker_id)s)
RETURNING e.id, e.task, e.cancel_requested;

-- name: leases_of_worker
-- The running executions leased to one worker (to give back those it never received).
SELECT id, lease_token, task FROM conductor_executions
WHERE state = 'running' AND worker_id = %(worker_id)s;

-- name: lease_states
-- Current token and state of executions whose write was refused (to spot resent writes).
SELECT id, lease_token, state FROM conductor_executions WHERE id = ANY(%(ids)s::bigint[]);

-- name: finished_among
-- Which of these executions are finished.
SELECT id FROM conductor_executions
WHERE id = ANY(%(ids)s::bigint[]) AND state IN ('succeeded', 'failed', 'cancelled');

-- name: save_steps
-- Record step results of current leases in one statement. Writes whose token is not current
-- (or that come from another worker than the lease's holder; '' is the coordinator) are left out (their absence from the result means stale); the first write of a name wins,
-- and the recorded result is returned either way, by the write's position (1-based): the one
-- recorded before (s; the statement's snapshot does not see its own inserts) or else the
-- first write of that name in this batch, which is the one inserted. (Matching the inserted
-- rows back by a join would be planned as a nested loop, quadratic in the batch.) A save
-- that arrives after its attempt's deadline (execution timeout) is stale too.
WITH u AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[], %(names)s::text[],
        %(results)s::text[], %(workers)s::text[])
        WITH ORDINALITY AS u(execution_id, token, name, result, worker_id, n)
), valid AS (
    SELECT u.n, u.execution_id, u.name, u.result::jsonb AS result FROM u
    JOIN conductor_executions e ON e.id = u.execution_id AND e.id = ANY(%(ids)s::bigint[])
        AND e.lease_token = u.token
        AND e.state::text = 'running' AND (u.worker_id = '' OR e.worker_id = u.worker_id)
        AND (e.deadline IS NULL OR e.deadline > %(lease_now)s)
    FOR SHARE OF e
), inserted AS (
    INSERT INTO conductor_steps (execution_id, name, result, created_at, seq)
    SELECT execution_id, name, result, %(now)s, nextval('conductor_steps_seq') FROM (
        SELECT DISTINCT ON (execution_id, name) execution_id, name, result, n FROM valid
        ORDER BY execution_id, name, n) AS firsts
    ORDER BY n
    ON CONFLICT (execution_id, name) DO NOTHING
)
SELECT v.n, coalesce(s.result, first_value(v.result) OVER (
        PARTITION BY v.execution_id, v.name ORDER BY v.n))::text
FROM valid v
LEFT JOIN conductor_steps s ON s.execution_id = v.execution_id AND s.name = v.name;

-- name: complete
-- Finish running executions with a result; returns the ids that were still leased by the
-- token to the worker that sent it ('' : the coordinator itself; the same in fail and release). Like fail and release, it notifies other coordinators of finished executions
-- (conductor_notify_finished, migration 0004). A run that ends cancelled gets its attempt
-- row; a successful one does not: the execution row holds it (leased_at, finished_at,
-- worker_id) and never changes again, so the hot path writes one row less. A completion
-- after the attempt's deadline (execution timeout, in real time %(lease_now)s) is stale:
-- the reaper fails that attempt as Timeout.
WITH done AS (
    UPDATE conductor_executions e
    SET state = CASE WHEN e.cancel_requested THEN 'cancelled' ELSE 'succeeded' END
            ::conductor_execution_state,
        result = u.result::jsonb, error = NULL, finished_at = %(now)s, lease_expires_at = NULL
    FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[], %(results)s::text[], %(workers)s::text[])
        AS u(id, token, result, worker_id)
    WHERE e.id = u.id AND e.id = ANY(%(ids)s::bigint[]) AND e.lease_token = u.token
        AND e.state::text = 'running'
        AND (u.worker_id = '' OR e.worker_id = u.worker_id)
        AND (e.deadline IS NULL OR e.deadline > %(lease_now)s)
    RETURNING e.id, e.task, e.state::text AS state, e.run_at, e.runs, e.attempt, e.worker_id,
        e.leased_at
), attempts AS (
    INSERT INTO conductor_attempts (execution_id, n, attempt, worker_id, started_at,
        finished_at, outcome)
    SELECT id, runs, attempt, worker_id, coalesce(leased_at, %(now)s), %(now)s, state FROM done
    WHERE state <> 'succeeded'
    ON CONFLICT DO NOTHING
)
SELECT id, task, state, run_at,
    (SELECT conductor_notify_finished(array_agg(id)) FROM done
     WHERE state IN ('succeeded', 'failed', 'cancelled'))
FROM done;

-- name: fail
-- Fail attempts: retry with backoff, or fail for good when attempts are used up, the error
-- is not retryable or cancellation was requested. Expired leases (%(lost)s) are only taken
-- when still expired (or past their deadline: execution timeout), and their token is
-- cleared so the old worker's writes are stale.
-- Lease expiry is in real time (%(lease_now)s); everything else follows the clock (%(now)s).
-- The backoff is clamped (at most 100 years, exponent and multiplier bounded) so that no
-- task definition can make the statement overflow: it serves every task (the reaper too).
WITH u AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[], %(errors)s::text[],
        %(retryable)s::boolean[], %(lost)s::boolean[], %(workers)s::text[])
        AS u(id, token, error, retryable, lost, worker_id)
), target AS (
    SELECT e.id, u.error, u.lost, e.runs, e.attempt, e.worker_id, e.leased_at,
        CASE WHEN e.cancel_requested THEN 'cancelled'
             WHEN NOT u.retryable OR e.attempt >= e.max_attempts
                  OR (u.error::jsonb ->> 'type') = ANY(t.non_retryable_errors) THEN 'failed'
             ELSE 'pending' END::conductor_execution_state AS next_state,
        %(now)s::timestamptz + make_interval(secs =>
            least(least(t.initial_backoff, 3153600000)
                  * power(least(greatest(t.backoff_multiplier, 1), 100), least(e.attempt - 1, 50)),
                  t.max_backoff, 3153600000)
            * (1 - least(greatest(t.backoff_jitter, 0), 1) * random())) AS retry_at
    FROM u
    JOIN conductor_executions e ON e.id = u.id AND e.id = ANY(%(ids)s::bigint[])
        AND e.lease_token = u.token
        AND e.state::text = 'running' AND (NOT u.lost OR e.lease_expires_at < %(lease_now)s
            OR e.deadline <= %(lease_now)s)
        AND (u.worker_id = '' OR e.worker_id = u.worker_id)
    CROSS JOIN LATERAL (SELECT * FROM conductor_tasks t WHERE t.name = e.task OFFSET 0) t
    FOR UPDATE OF e
), done AS (
    UPDATE conductor_executions e
    SET state = target.next_state, error = target.error::jsonb, lease_expires_at = NULL,
        lease_token = CASE WHEN target.lost THEN NULL ELSE e.lease_token END,
        run_at = CASE WHEN target.next_state = 'pending' THEN target.retry_at ELSE e.run_at END,
        finished_at = CASE WHEN target.next_state = 'pending' THEN NULL ELSE %(now)s END
    FROM target
    WHERE e.id = target.id AND e.id = ANY(ARRAY(SELECT id FROM target))
    RETURNING e.id, e.task, e.state::text AS state, e.run_at
), attempts AS (
    INSERT INTO conductor_attempts (execution_id, n, attempt, worker_id, started_at,
        finished_at, outcome, error)
    SELECT id, runs, attempt, worker_id, coalesce(leased_at, %(now)s), %(now)s,
        CASE WHEN next_state = 'cancelled' THEN 'cancelled' ELSE 'failed' END, error::jsonb
    FROM target
    ON CONFLICT DO NOTHING
)
SELECT id, task, state, run_at,
    (SELECT conductor_notify_finished(array_agg(id)) FROM done
     WHERE state IN ('succeeded', 'failed', 'cancelled'))
FROM done;


-- name: release
-- Give executions back without counting an attempt; cancelled ones end as cancelled. Not
-- after the attempt's deadline (execution timeout): that attempt fails as Timeout.
WITH done AS (
    UPDATE conductor_executions e
    SET state = CASE WHEN e.cancel_requested THEN 'cancelled' ELSE 'pending' END
            ::conductor_execution_state,
        attempt = e.attempt - 1, lease_expires_at = NULL,
        run_at = greatest(coalesce(u.run_at, %(now)s), %(now)s),
        finished_at = CASE WHEN e.cancel_requested THEN %(now)s END
    FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[], %(run_ats)s::timestamptz[],
        %(workers)s::text[], %(reasons)s::text[]) AS u(id, token, run_at, worker_id, reason)
    WHERE e.id = u.id AND e.id = ANY(%(ids)s::bigint[]) AND e.lease_token = u.token
        AND e.state::text = 'running'
        AND (u.worker_id = '' OR e.worker_id = u.worker_id)
        AND (e.deadline IS NULL OR e.deadline > %(lease_now)s)
    RETURNING e.id, e.task, e.state::text AS state, e.run_at, e.runs, e.attempt + 1 AS attempt,
        e.worker_id, e.leased_at, u.reason
), attempts AS (
    INSERT INTO conductor_attempts (execution_id, n, attempt, worker_id, started_at,
        finished_at, outcome, reason)
    SELECT id, runs, attempt, worker_id, coalesce(leased_at, %(now)s), %(now)s,
        CASE WHEN state = 'cancelled' THEN 'cancelled' ELSE 'released' END, reason
    FROM done
    ON CONFLICT DO NOTHING
)
SELECT id, task, state, run_at,
    (SELECT conductor_notify_finished(array_agg(id)) FROM done
     WHERE state IN ('succeeded', 'failed', 'cancelled'))
FROM done;

-- name: shift_deadlines
-- Timed attempts whose worker said they wait unstarted (started false: no deadline while
-- they wait) or were handed to a pool process (true: the deadline counts from now again);
-- by token, while running, and never past a deadline that has passed (deadlines.py).
-- The task's timeout is read per row (a join to the tasks table let the planner reach the
-- executions through the task's index, every row of it).
UPDATE conductor_executions e
SET deadline = CASE WHEN u.started THEN %(lease_now)s::timestamptz + make_interval(secs =>
        coalesce(e.timeout, (SELECT t.timeout FROM conductor_tasks t WHERE t.name = e.task))
        + %(grace)s) END
FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[], %(started)s::boolean[])
    AS u(id, token, started)
WHERE e.id = u.id AND e.id = ANY(%(ids)s::bigint[]) AND e.lease_token = u.token
    AND e.state::text = 'running'
    AND coalesce(e.timeout, (SELECT t.timeout FROM conductor_tasks t WHERE t.name = e.task))
        IS NOT NULL
    AND (e.deadline IS NULL OR e.deadline > %(lease_now)s);

-- name: mark_unstarted
-- A worker's stream ended: record which of its leases it had not started (by token, leased
-- to that worker, and not renewed since this coordinator last renewed them: a reconnect to
-- any coordinator renews them later than %(renewed_until)s).
UPDATE conductor_executions e SET lease_unstarted = true
FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[]) AS u(id, token)
WHERE e.id = u.id AND e.id = ANY(%(ids)s::bigint[]) AND e.lease_token = u.token
    AND e.state::text = 'running'
    AND e.worker_id = %(worker_id)s AND e.lease_expires_at <= %(renewed_until)s;

-- name: return_unstarted
-- Expired leases that never started: back to the queue in their old place (run_at kept)
-- without counting an attempt or a run (no attempt-history row), their token cleared so that the old worker's writes are
-- stale; cancelled ones end as cancelled. Only while still expired and marked.
WITH done AS (
    UPDATE conductor_executions e
    SET state = CASE WHEN e.cancel_requested THEN 'cancelled' ELSE 'pending' END
            ::conductor_execution_state,
        attempt = e.attempt - 1, lease_expires_at = NULL, lease_token = NULL,
        lease_unstarted = false, unstarted_returns = e.unstarted_returns + 1,
        runs = greatest(e.runs - 1, 0),
        finished_at = CASE WHEN e.cancel_requested THEN %(now)s END
    FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[]) AS u(id, token)
    WHERE e.id = u.id AND e.id = ANY(%(ids)s::bigint[]) AND e.lease_token = u.token
        AND e.state::text = 'running'
        AND e.lease_unstarted AND e.unstarted_returns < %(max_returns)s
        AND e.lease_expires_at < %(lease_now)s
    RETURNING e.id, e.task, e.state::text AS state, e.run_at
)
SELECT id, task, state, run_at,
    (SELECT conductor_notify_finished(array_agg(id)) FROM done
     WHERE state IN ('succeeded', 'failed', 'cancelled'))
FROM done;

-- name: expired_leases
-- Leases whose worker stopped heartbeating (%(now)s is real time here, not the test clock),
-- and whether each may return without an attempt (marked unstarted, returned so fewer than
-- %(max_returns)s times); then attempts past their deadline (execution timeout), whatever
-- their heartbeats (never returned without an attempt).
(SELECT id, lease_token, lease_unstarted AND unstarted_returns < %(max_returns)s, false
 FROM conductor_executions
 WHERE state = 'running' AND lease_expires_at < %(now)s
 ORDER BY lease_expires_at
 LIMIT %(limit)s)
UNION ALL
(SELECT id, lease_token, false, true
 FROM conductor_executions
 WHERE state = 'running' AND deadline IS NOT NULL AND deadline <= %(now)s
     AND lease_expires_at >= %(now)s
 ORDER BY deadline
 LIMIT %(limit)s);


-- name: get_execution
-- One execution.
SELECT id, task, queue, state::text, payload::text, result::text, error::text, priority,
    run_at, created_at, started_at, finished_at, attempt, max_attempts, dedupe_key,
    cancel_requested, schedule, fire_time, parent_id, waiting_for, runs, leased_at, worker_id,
    rerun_of, redacted_at, dead_letter_of,
    coalesce(timeout, (SELECT t.timeout FROM conductor_tasks t WHERE t.name = task)),
    concurrency_key
FROM conductor_executions WHERE id = %(id)s;

-- name: list_executions
-- A page of executions, newest first, filtered (%(contains)s: the payload filter as one
-- nested object, implied by %(match)s and cheaper to test first).
SELECT id, task, queue, state::text, payload::text, result::text, error::text, priority,
    run_at, created_at, started_at, finished_at, attempt, max_attempts, dedupe_key,
    cancel_requested, schedule, fire_time, parent_id, waiting_for, runs, leased_at, worker_id,
    rerun_of, redacted_at, dead_letter_of,
    coalesce(timeout, (SELECT t.timeout FROM conductor_tasks t WHERE t.name = task)),
    concurrency_key
FROM conductor_executions
WHERE (%(task)s::text IS NULL OR task = %(task)s)
  AND (%(parent_id)s::bigint IS NULL OR parent_id = %(parent_id)s)
  AND (%(states)s::text[] IS NULL OR state::text = ANY(%(states)s::text[]))
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s)
  AND (%(created_after)s::timestamptz IS NULL OR created_at >= %(created_after)s)
  AND (%(created_before)s::timestamptz IS NULL OR created_at < %(created_before)s)
  AND (%(match)s::jsonb IS NULL
       OR (payload @> %(contains)s::jsonb AND conductor_matches(payload, %(match)s::jsonb)))
ORDER BY id DESC
LIMIT %(limit)s;

-- name: list_steps
-- The recorded steps of one execution, in the order they were saved.
SELECT name, result::text, created_at FROM conductor_steps
WHERE execution_id = %(id)s ORDER BY seq NULLS FIRST, created_at, name;

-- name: list_attempts
-- The ended runs of one execution, oldest first.
SELECT n, attempt, worker_id, started_at, finished_at, outcome, reason, error::text
FROM conductor_attempts WHERE execution_id = %(id)s ORDER BY n;

-- name: put_schedule
-- Create or replace a schedule; an unchanged cron and time zone keep their next fire time.
INSERT INTO conductor_schedules AS s (task, name, cron, timezone, payload, static, missed,
    missed_limit, next_fire_at, created_at, updated_at)
VALUES (%(task)s, %(name)s, %(cron)s, %(timezone)s, %(payload)s::jsonb, %(static)s,
    %(missed)s, %(missed_limit)s, %(next_fire_at)s, %(now)s, %(now)s)
ON CONFLICT (task, name) DO UPDATE SET
    cron = EXCLUDED.cron, timezone = EXCLUDED.timezone, payload = EXCLUDED.payload,
    static = EXCLUDED.static, missed = EXCLUDED.missed, missed_limit = EXCLUDED.missed_limit,
    updated_at = EXCLUDED.updated_at,
    next_fire_at = CASE WHEN s.cron = EXCLUDED.cron AND s.timezone = EXCLUDED.timezone
                        THEN s.next_fire_at ELSE EXCLUDED.next_fire_at END
RETURNING task, name, cron, timezone, payload::text, static, missed, missed_limit, next_fire_at;

-- name: delete_schedule
-- Delete one schedule.
DELETE FROM conductor_schedules WHERE task = %(task)s AND name = %(name)s RETURNING name;

-- name: cancel_schedule_fires
-- Cancel the pending executions a deleted schedule created.
UPDATE conductor_executions SET state = 'cancelled', finished_at = %(now)s
WHERE task = %(task)s AND schedule = %(name)s AND state = 'pending'
RETURNING id;

-- name: delete_stale_static_schedules
-- Static schedules a task no longer declares.
DELETE FROM conductor_schedules
WHERE task = %(task)s AND static AND NOT (name = ANY(%(names)s::text[]))
RETURNING name;

-- name: list_schedules
-- Schedules, by task and name.
SELECT task, name, cron, timezone, payload::text, static, missed, missed_limit, next_fire_at
FROM conductor_schedules
WHERE %(task)s::text IS NULL OR task = %(task)s
ORDER BY task, name;

-- name: try_scheduler_lock
-- Only one coordinator fires schedules at a time (the unique fire index makes it safe anyway).
SELECT pg_try_advisory_xact_lock(hashtext('conductor_scheduler'));

-- name: due_schedules
-- Schedules whose next fire time has come.
SELECT task, name, cron, timezone, payload::text, static, missed, missed_limit, next_fire_at
FROM conductor_schedules
WHERE next_fire_at <= %(now)s
ORDER BY next_fire_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: insert_fires
-- One execution per (schedule, fire time); a fire that exists already is skipped.
INSERT INTO conductor_executions (task, queue, payload, priority, run_at, created_at,
    max_attempts, schedule, fire_time, concurrency_key)
SELECT u.task, t.queue, u.payload::jsonb, 0, u.fire_time, %(now)s, t.max_attempts, u.name,
    u.fire_time,
    conductor_key(t.key_path IS NOT NULL OR t.key_concurrency > 0, t.key_path, u.payload::jsonb)
FROM unnest(%(tasks)s::text[], %(names)s::text[], %(payloads)s::text[],
    %(fire_times)s::timestamptz[]) AS u(task, name, payload, fire_time)
JOIN conductor_tasks t ON t.name = u.task
ON CONFLICT (task, schedule, fire_time) WHERE schedule IS NOT NULL DO NOTHING
RETURNING task;

-- name: set_next_fires
-- Move schedules to their next fire time.
UPDATE conductor_schedules s SET next_fire_at = u.next_fire_at
FROM unnest(%(tasks)s::text[], %(names)s::text[], %(next_fire_ats)s::timestamptz[])
    AS u(task, name, next_fire_at)
WHERE s.task = u.task AND s.name = u.name;

-- name: next_schedule_due
-- The earliest next fire time of any schedule.
SELECT min(next_fire_at) FROM conductor_schedules;

-- name: upsert_worker
-- A worker connected (or reconnected).
INSERT INTO conductor_workers (worker_id, hostname, pid, tasks, coordinator, leases,
    capacity, connected_at, last_seen, queues)
VALUES (%(worker_id)s, %(hostname)s, %(pid)s, %(tasks)s, %(coordinator)s, %(leases)s,
    %(capacity)s, %(now)s, %(now)s, %(queues)s)
ON CONFLICT (worker_id) DO UPDATE SET hostname = EXCLUDED.hostname, pid = EXCLUDED.pid,
    tasks = EXCLUDED.tasks, coordinator = EXCLUDED.coordinator, leases = EXCLUDED.leases,
    capacity = EXCLUDED.capacity, queues = EXCLUDED.queues,
    connected_at = EXCLUDED.connected_at, last_seen = EXCLUDED.last_seen,
    disconnected_at = NULL;

-- name: touch_worker
-- A worker's heartbeat.
UPDATE conductor_workers SET last_seen = %(now)s, leases = %(leases)s
WHERE worker_id = %(worker_id)s;

-- name: disconnect_worker
-- A worker's stream closed.
UPDATE conductor_workers SET disconnected_at = %(now)s
WHERE worker_id = %(worker_id)s AND coordinator = %(coordinator)s;

-- name: list_workers
-- Workers connected now (heartbeat seen recently), with the leases each holds now.
SELECT w.worker_id, w.hostname, w.pid, w.tasks,
    (SELECT count(*) FROM conductor_executions e
     WHERE e.state = 'running' AND e.worker_id = w.worker_id)::int AS leases,
    w.connected_at, w.last_seen, w.coordinator, w.capacity, w.queues
FROM conductor_workers w
WHERE w.disconnected_at IS NULL AND w.last_seen > %(seen_after)s
ORDER BY w.worker_id;

-- name: queue_stats
-- Per task: ready, waiting and running executions, when the oldest ready one became ready,
-- and how many live workers serve it. Pending rows are counted per task from the ready index
-- (an index-only scan once vacuumed), running ones from the running rows alone; still a count
-- of the whole backlog, so the gauge loop refreshes less often when it takes long
-- (dispatch.gauge_pause).
SELECT t.name, p.ready, p.waiting, coalesce(r.running, 0), p.oldest,
    (SELECT count(*) FROM conductor_workers w
     WHERE t.name = ANY(w.tasks) AND w.disconnected_at IS NULL
         AND w.last_seen > %(seen_after)s)::int
FROM conductor_tasks t
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE e.run_at <= %(now)s) AS ready,
        count(*) FILTER (WHERE e.run_at > %(now)s) AS waiting,
        min(e.run_at) FILTER (WHERE e.run_at <= %(now)s) AS oldest
    FROM conductor_executions e
    WHERE e.task = t.name AND e.state = 'pending') p
LEFT JOIN (
    SELECT task, count(*) AS running FROM conductor_executions
    WHERE state = 'running' GROUP BY task) r ON r.task = t.name
ORDER BY t.name;

-- -- Workflows (docs/workflows.md; functions and triggers in migration 0008) ---------------

-- name: lock_lease
-- Lock a running execution's row if the lease token is still current (a workflow call from
-- its handler); no row: the lease is gone.
SELECT task FROM conductor_executions
WHERE id = %(id)s AND lease_token = %(token)s AND state = 'running'
FOR UPDATE;

-- name: get_wait
-- One wait of an execution, by step name.
SELECT kind, key, resolved, deadline FROM conductor_waits
WHERE execution_id = %(id)s AND step = %(step)s;

-- name: insert_wait
-- Open a wait (the caller holds the execution's row lock, so it cannot race itself).
INSERT INTO conductor_waits (execution_id, step, kind, key, match, remaining, deadline,
    created_at)
VALUES (%(id)s, %(step)s, %(kind)s, %(key)s, %(match)s::jsonb, %(remaining)s, %(deadline)s,
    %(now)s);

-- name: lock_event_waits
-- Opening a wait for an event: ordered with conductor_emit of that event (which takes this
-- lock shared, migration 0016), taken before the execution's row lock (the order emit uses).
SELECT pg_advisory_xact_lock(hashtext('conductor_event'), hashtext(%(key)s));

-- name: first_event_since
-- The first event of a name emitted at or after a wait began that matches its filter (an
-- emit that committed just before the wait was opened).
SELECT payload::text FROM conductor_events
WHERE event = %(key)s AND created_at >= %(now)s AND conductor_matches(payload, %(match)s::jsonb)
ORDER BY created_at, id
LIMIT 1;

-- name: get_step
-- One recorded step's result.
SELECT result::text FROM conductor_steps WHERE execution_id = %(id)s AND name = %(step)s;

-- name: insert_children
-- The children of one step of a parent, ids ascending in payload order.
INSERT INTO conductor_executions (task, queue, payload, priority, run_at, created_at,
    max_attempts, parent_id, parent_step, concurrency_key)
SELECT %(task)s, %(queue)s, u.payload::jsonb, %(priority)s, %(now)s, %(now)s,
    %(max_attempts)s, %(parent_id)s, %(step)s,
    conductor_key(t.key_path IS NOT NULL OR t.key_concurrency > 0, t.key_path, u.payload::jsonb)
FROM unnest(%(payloads)s::text[]) WITH ORDINALITY AS u(payload, n)
LEFT JOIN conductor_tasks t ON t.name = %(task)s
ORDER BY u.n
RETURNING id;

-- name: children_of_step
-- The ids of the children one step created, in payload order.
SELECT id FROM conductor_executions
WHERE parent_id = %(id)s AND parent_step = %(step)s ORDER BY id;

-- name: resolve_wait
-- Resolve an open wait with a result (conductor_resolve_wait, migration 0008).
SELECT conductor_resolve_wait(%(id)s, %(step)s, %(result)s::jsonb, %(now)s);

-- name: timeout_wait
-- Resolve an open wait whose deadline passed as timed out (conductor_timeout_wait).
SELECT conductor_timeout_wait(%(id)s, %(step)s, %(now)s);

-- name: first_signal
-- The first signal of a name sent to an execution.
SELECT payload::text FROM conductor_signals
WHERE execution_id = %(id)s AND name = %(key)s ORDER BY id LIMIT 1;

-- name: signal
-- Send a signal (conductor_signal): the execution's state, null when there is none.
SELECT conductor_signal(%(id)s, %(name)s, %(payload)s::jsonb, %(now)s);

-- name: emit
-- Emit an event (conductor_emit): the ids of the executions created.
SELECT conductor_emit(%(event)s, %(payload)s::jsonb, %(dedupe_key)s, %(now)s);

-- name: delete_subscriptions
-- Forget a task's event subscriptions (before writing those of a new registration).
DELETE FROM conductor_subscriptions WHERE task = ANY(%(tasks)s::text[]);

-- name: insert_subscriptions
-- Event subscriptions of registered tasks.
INSERT INTO conductor_subscriptions (task, event, filter)
SELECT * FROM unnest(%(tasks)s::text[], %(events)s::text[], %(filters)s::jsonb[])
ON CONFLICT (task, event) DO UPDATE SET filter = EXCLUDED.filter;
-- name: insert_rerun
-- A new execution of a finished one's task, linked to it (payload: the original's when null).
INSERT INTO conductor_executions (task, queue, payload, priority, run_at, created_at,
    max_attempts, rerun_of, timeout, concurrency_key)
SELECT task, queue, coalesce(%(payload)s::jsonb, payload), priority, %(now)s, %(now)s,
    max_attempts, id, timeout, concurrency_key
FROM conductor_executions
WHERE id = %(id)s AND state IN ('succeeded', 'failed', 'cancelled')
RETURNING id, task;

-- name: copy_steps
-- Copy the named steps of one execution to another, in their save order.
INSERT INTO conductor_steps (execution_id, name, result, created_at, seq)
SELECT %(new_id)s, name, result, created_at, nextval('conductor_steps_seq')
FROM (SELECT name, result, created_at FROM conductor_steps
      WHERE execution_id = %(id)s AND name = ANY(%(names)s::text[])
      ORDER BY seq NULLS FIRST, created_at, name) AS copied;

-- name: retry_executions
-- Run failed or cancelled executions again in place: steps kept, attempts start over (the
-- history stays in conductor_attempts). Skips redacted ones (their payload is gone), those
-- whose dedupe key an unfinished execution holds now, and of several with one key in the
-- batch all but the first.
UPDATE conductor_executions e
SET state = 'pending', attempt = 0, error = NULL, result = NULL, finished_at = NULL,
    run_at = %(now)s, cancel_requested = false, lease_token = NULL
WHERE e.id = ANY(%(ids)s::bigint[]) AND e.state IN ('failed', 'cancelled')
    AND e.redacted_at IS NULL
    AND (e.dedupe_key IS NULL OR (NOT EXISTS (
        SELECT 1 FROM conductor_executions o
        WHERE o.task = e.task AND o.dedupe_key = e.dedupe_key AND o.state IN ('pending', 'running'))
        AND e.id = (
        SELECT min(b.id) FROM conductor_executions b
        WHERE b.id = ANY(%(ids)s::bigint[]) AND b.task = e.task
            AND b.dedupe_key = e.dedupe_key AND b.state IN ('failed', 'cancelled'))))
RETURNING e.id, e.task;

-- name: bulk_page
-- The next page of executions matching a bulk filter, by id (each filter null: any). With
-- %(uncancelled)s, running executions already asked to cancel are left out.
SELECT id FROM conductor_executions
WHERE id > %(after_id)s
  AND state::text = ANY(%(states)s::text[])
  AND (%(task)s::text IS NULL OR task = %(task)s)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(created_after)s::timestamptz IS NULL OR created_at >= %(created_after)s)
  AND (%(created_before)s::timestamptz IS NULL OR created_at < %(created_before)s)
  AND (%(parent_id)s::bigint IS NULL OR parent_id = %(parent_id)s)
  AND (%(match)s::jsonb IS NULL
       OR (payload @> %(contains)s::jsonb AND conductor_matches(payload, %(match)s::jsonb)))
  AND NOT (%(uncancelled)s AND cancel_requested)
ORDER BY id
LIMIT %(limit)s;

-- name: cancel
-- Cancel pending executions at once; flag running ones (those flagged before only when
-- %(again)s: a bulk cancel counts each once).
UPDATE conductor_executions
SET state = CASE WHEN state = 'pending' THEN 'cancelled' ELSE state END
        ::conductor_execution_state,
    cancel_requested = (state = 'running'),
    finished_at = CASE WHEN state = 'pending' THEN %(now)s ELSE finished_at END
WHERE id = ANY(%(ids)s::bigint[])
    AND (state = 'pending' OR (state = 'running' AND (%(again)s OR NOT cancel_requested)))
RETURNING id, state::text, worker_id;

-- name: delete_many
-- Delete finished executions with their steps, attempts and other rows (migration 0020);
-- the row locks keep them final and keep writes for them out until the delete commits.
SELECT conductor_delete_executions(ARRAY(
    SELECT id FROM conductor_executions
    WHERE id = ANY(%(ids)s::bigint[]) AND state IN ('succeeded', 'failed', 'cancelled')
    FOR UPDATE));

-- name: retention_policies
-- Each task's own retention and redaction settings (null: the coordinator's default).
SELECT name, retention_succeeded, retention_failed, retention_cancelled, redact_after
FROM conductor_tasks ORDER BY name;

-- name: try_maintenance_lock
-- Only one coordinator runs retention at a time (held by the connection until unlocked).
SELECT pg_try_advisory_lock(hashtext('conductor_maintenance'));

-- name: maintenance_unlock
-- Let another coordinator run the next maintenance pass.
SELECT pg_advisory_unlock(hashtext('conductor_maintenance'));

-- name: delete_expired
-- Delete up to %(limit)s executions of one task that finished in one state before the
-- cutoff, oldest first, with their other rows (migration 0020); rows another transaction
-- holds are left for the next pass.
SELECT count(*) FROM conductor_delete_executions(ARRAY(
    SELECT id FROM conductor_executions
    WHERE task = %(task)s AND state = %(state)s::conductor_execution_state
        AND finished_at < %(cutoff)s
    ORDER BY finished_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED));

-- name: can_vacuum
-- Whether this role may vacuum all of these tables (it owns them, or is a superuser).
SELECT bool_and(pg_has_role(c.relowner, 'USAGE'))
FROM unnest(%(tables)s::text[]) AS t(name)
JOIN pg_class c ON c.oid = to_regclass(t.name);

-- name: dead_rows
-- Dead and live row versions of these tables, as PostgreSQL's statistics (autovacuum's
-- input) count them.
SELECT t.name, pg_stat_get_dead_tuples(c.oid), pg_stat_get_live_tuples(c.oid)
FROM unnest(%(tables)s::text[]) AS t(name)
JOIN pg_class c ON c.oid = to_regclass(t.name);

-- name: vacuum
-- Make one table's dead row versions reusable; skipped while another vacuum (autovacuum, or
-- another coordinator's) holds the table. {table} is an identifier filled in by the store.
VACUUM (SKIP_LOCKED) {table};

-- name: delete_old_events
-- Delete up to %(limit)s events emitted before the cutoff, oldest first (their dedupe keys
-- go with them; the executions they created stay).
WITH deleted AS (
    DELETE FROM conductor_events WHERE id IN (
        SELECT id FROM conductor_events WHERE created_at < %(cutoff)s
        ORDER BY created_at
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED)
    RETURNING 1
)
SELECT count(*) FROM deleted;

-- name: redact_finished
-- Drop payload, result, step results and error texts (error types stay) of up to
-- %(limit)s executions of one task that finished in one state between %(since)s and the
-- cutoff; returns how many and the last finish time redacted.
WITH picked AS (
    SELECT id, finished_at FROM conductor_executions
    WHERE task = %(task)s AND state = %(state)s::conductor_execution_state
        AND finished_at >= %(since)s AND finished_at < %(cutoff)s AND redacted_at IS NULL
    ORDER BY finished_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), executions AS (
    UPDATE conductor_executions e
    SET payload = 'null', result = NULL, redacted_at = %(now)s,
        error = CASE WHEN e.error IS NULL THEN NULL ELSE jsonb_build_object(
            'type', e.error -> 'type', 'message', '', 'traceback', '') END
    WHERE e.id = ANY(ARRAY(SELECT id FROM picked))
), steps AS (
    UPDATE conductor_steps s SET result = 'null'
    WHERE s.execution_id = ANY(ARRAY(SELECT id FROM picked))
), attempts AS (
    UPDATE conductor_attempts a
    SET error = jsonb_build_object('type', a.error -> 'type', 'message', '', 'traceback', '')
    WHERE a.execution_id = ANY(ARRAY(SELECT id FROM picked)) AND a.error IS NOT NULL
)
SELECT count(*), max(finished_at) FROM picked;

-- name: redaction_marks
-- How far redaction got, per task and state.
SELECT task, state::text, through FROM conductor_redaction_marks;

-- name: set_redaction_mark
-- Move a redaction mark forward.
INSERT INTO conductor_redaction_marks AS m (task, state, through)
VALUES (%(task)s, %(state)s::conductor_execution_state, %(through)s)
ON CONFLICT (task, state) DO UPDATE SET through = greatest(m.through, EXCLUDED.through);

-- name: list_tasks
-- Registered tasks with the workers serving them now and when one was last seen.
SELECT t.name,
    coalesce(array_agg(w.worker_id ORDER BY w.worker_id) FILTER (
        WHERE w.disconnected_at IS NULL AND w.last_seen > %(seen_after)s), '{}'),
    greatest(t.registered_at, max(w.last_seen)),
    t.retention_succeeded, t.retention_failed, t.retention_cancelled, t.redact_after
FROM conductor_tasks t
LEFT JOIN conductor_workers w ON t.name = ANY(w.tasks)
GROUP BY t.name
ORDER BY t.name;

-- name: task_in_use
-- Whether executions of a task remain.
SELECT EXISTS (SELECT 1 FROM conductor_executions WHERE task = %(name)s);

-- name: delete_task
-- Remove a task definition with its schedules; returns how many schedules went.
WITH schedules AS (
    DELETE FROM conductor_schedules WHERE task = %(name)s RETURNING 1
), task AS (
    DELETE FROM conductor_tasks WHERE name = %(name)s RETURNING 1
)
SELECT (SELECT count(*) FROM task), (SELECT count(*) FROM schedules);

-- name: delete_departed_workers
-- Forget workers not seen since %(seen_before)s (real time): the workers table stays bounded
-- by the workers of one --task-stale-after period.
WITH deleted AS (
    DELETE FROM conductor_workers WHERE worker_id IN (
        SELECT worker_id FROM conductor_workers WHERE last_seen < %(seen_before)s
        LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
    RETURNING 1
)
SELECT count(*) FROM deleted;
-- name: lock_log_lines
-- Serialise log inserts per execution for the rest of the transaction (the count of
-- insert_log_lines must see every earlier insert).
SELECT pg_advisory_xact_lock(hashtext('conductor_logs'), (id %% 2147483647)::integer)
FROM (SELECT DISTINCT unnest(%(ids)s::bigint[]) AS id ORDER BY 1) AS ids;

-- name: insert_log_lines
-- Store log lines of existing executions, in order, up to %(most)s lines per execution
-- (later ones are dropped).
WITH u AS (
    SELECT u.*, row_number() OVER (PARTITION BY u.id ORDER BY u.n) AS rank
    FROM unnest(%(ids)s::bigint[], %(attempts)s::integer[], %(levels)s::text[],
        %(messages)s::text[], %(times)s::timestamptz[])
        WITH ORDINALITY AS u(id, attempt, level, message, logged_at, n)
), kept AS (
    SELECT count(*) AS n, u.id FROM conductor_execution_logs l JOIN (SELECT DISTINCT id FROM u) u
        ON l.execution_id = u.id GROUP BY u.id
)
INSERT INTO conductor_execution_logs (execution_id, attempt, level, message, logged_at)
SELECT u.id, u.attempt, u.level, u.message, u.logged_at
FROM u JOIN conductor_executions e ON e.id = u.id AND e.id = ANY(%(ids)s::bigint[])
LEFT JOIN kept ON kept.id = u.id
WHERE coalesce(kept.n, 0) + u.rank <= %(most)s
ORDER BY u.n
FOR KEY SHARE OF e;

-- name: list_log_lines
-- One execution's log lines after a sequence number, oldest first.
SELECT sequence, attempt, level, message, logged_at FROM conductor_execution_logs
WHERE execution_id = %(id)s AND sequence > %(after)s
ORDER BY sequence LIMIT %(limit)s;

-- name: ping
-- Whether the database answers (conductor status).
SELECT 1;

-- -- Dashboard (docs/dashboard.md) -----------------------------------------------------

-- name: task_activity
-- Per registered task and final state: executions finished in [since, until), counted per
-- bucket of %(bucket)s seconds (0 = the oldest); each (task, state) is one range scan of
-- conductor_executions_finished.
SELECT t.name, s.state,
    floor(extract(epoch FROM e.finished_at - %(since)s) / %(bucket)s)::int AS bucket,
    count(*)
FROM conductor_tasks t
CROSS JOIN unnest(ARRAY['succeeded', 'failed', 'cancelled']) AS s(state)
JOIN LATERAL (
    SELECT x.finished_at FROM conductor_executions x
    WHERE x.task = t.name AND x.state = s.state::conductor_execution_state
      AND x.finished_at >= %(since)s AND x.finished_at < %(until)s
) e ON true
GROUP BY t.name, s.state, bucket;

-- name: explain_running
-- Up to 20 running executions of a task (with one key, unless %(key)s is null), oldest lease
-- first, and how many run in all: what holds a concurrency cap (explain).
SELECT coalesce(array_agg(id ORDER BY leased_at, id) FILTER (WHERE n <= 20), '{}'),
    count(*)
FROM (
    SELECT id, leased_at, row_number() OVER (ORDER BY leased_at, id) AS n
    FROM conductor_executions
    WHERE state = 'running' AND task = %(task)s
        AND (%(key)s::text IS NULL OR concurrency_key = %(key)s::text)
) r;

-- name: explain_bucket
-- A rate bucket as of now: whole tokens (null: never used, so full) and its pause (explain).
SELECT least(%(rate_count)s::float8, tokens + %(rate_count)s / %(rate_period)s
        * greatest(0, extract(epoch FROM %(now)s - updated_at))),
    paused_until
FROM conductor_rate_buckets WHERE name = %(bucket)s AND key = %(key)s;

-- name: explain_children
-- Up to 20 unfinished children of an execution's step (explain).
SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM (
    SELECT id FROM conductor_executions
    WHERE parent_id = %(id)s AND parent_step = %(step)s
        AND state IN ('pending', 'running')
    ORDER BY id LIMIT 20
) c;

-- name: explain_workers
-- Whether a connected worker runs the task and takes work from the queue (explain).
SELECT EXISTS (
    SELECT 1 FROM conductor_workers
    WHERE disconnected_at IS NULL AND last_seen > %(seen_after)s
        AND %(task)s = ANY(tasks) AND (queues IS NULL OR %(queue)s = ANY(queues))
);
