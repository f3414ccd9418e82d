-- Initial schema: task definitions, executions and their steps.

CREATE TYPE conductor_execution_state AS ENUM
    ('pending', 'running', 'succeeded', 'failed', 'cancelled');

-- One row per task type, written when a worker registers it.
CREATE TABLE conductor_tasks (
    name text PRIMARY KEY,
    max_attempts integer NOT NULL CHECK (max_attempts >= 1),
    initial_backoff double precision NOT NULL CHECK (initial_backoff > 0),
    max_backoff double precision NOT NULL CHECK (max_backoff >= initial_backoff),
    backoff_multiplier double precision NOT NULL CHECK (backoff_multiplier >= 1),
    backoff_jitter double precision NOT NULL CHECK (backoff_jitter BETWEEN 0 AND 1),
    non_retryable_errors text[] NOT NULL DEFAULT '{}',
    window_start text,
    window_end text,
    timezone text NOT NULL DEFAULT 'UTC',
    concurrency integer NOT NULL DEFAULT 0 CHECK (concurrency >= 0),
    registered_at timestamptz NOT NULL
);

CREATE TABLE conductor_executions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task text NOT NULL,
    queue text NOT NULL DEFAULT 'default',
    state conductor_execution_state NOT NULL DEFAULT 'pending',
    payload jsonb NOT NULL DEFAULT 'null',
    result jsonb,
    -- {"type": ..., "message": ..., "traceback": ...} of the last failed attempt
    error jsonb,
    priority integer NOT NULL DEFAULT 0,
    run_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    started_at timestamptz,
    finished_at timestamptz,
    -- attempts counted so far; a release gives its attempt back
    attempt integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL CHECK (max_attempts >= 1),
    -- the fencing token of the current lease; kept after a worker's own final write so that
    -- a resent write is recognised, cleared when the lease is taken away (expiry)
    lease_token uuid,
    lease_expires_at timestamptz,
    worker_id text,
    dedupe_key text,
    cancel_requested boolean NOT NULL DEFAULT false,
    CHECK ((state = 'running') = (lease_expires_at IS NOT NULL))
);

-- The lease query: ready work of one task, highest priority first, FIFO within.
CREATE INDEX conductor_executions_ready
    ON conductor_executions (task, priority DESC, run_at, id) WHERE state = 'pending';
-- The reaper: leases by expiry.
CREATE INDEX conductor_executions_leased
    ON conductor_executions (lease_expires_at) WHERE state = 'running';
-- Dedupe: one unfinished execution per (task, key).
CREATE UNIQUE INDEX conductor_executions_dedupe
    ON conductor_executions (task, dedupe_key)
    WHERE dedupe_key IS NOT NULL AND state IN ('pending', 'running');
-- Listing by task, newest first.
CREATE INDEX conductor_executions_task ON conductor_executions (task, id);

CREATE TABLE conductor_steps (
    execution_id bigint NOT NULL REFERENCES conductor_executions (id) ON DELETE CASCADE,
    name text NOT NULL,
    result jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (execution_id, name)
);
