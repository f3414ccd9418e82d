-- Runs for months (#16): attempt history, retention and redaction, reruns.

-- Every run of an execution that ended: failures, successes, releases (which give their
-- attempt back) and lost workers. A run still going is the execution row itself (leased_at,
-- worker_id). Deleted with its execution.
CREATE TABLE conductor_attempts (
    execution_id bigint NOT NULL REFERENCES conductor_executions (id) ON DELETE CASCADE,
    -- 1-based run number over the execution's life (conductor_executions.runs at the lease)
    n integer NOT NULL,
    -- the attempt number counted when it ran (a release does not count one)
    attempt integer NOT NULL,
    worker_id text,
    started_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    -- succeeded | failed | released | cancelled
    outcome text NOT NULL,
    -- why a release happened (checkpoint, window, shutdown, sleep ...); empty otherwise
    reason text NOT NULL DEFAULT '',
    -- {"type", "message", "traceback"} of a failed run
    error jsonb,
    PRIMARY KEY (execution_id, n)
);

ALTER TABLE conductor_executions
    -- runs leased so far (releases included): the number of the next attempt row
    ADD COLUMN runs integer NOT NULL DEFAULT 0,
    -- when the current (or last) run was leased
    ADD COLUMN leased_at timestamptz,
    -- the execution this one reruns (no foreign key: the original may be deleted first)
    ADD COLUMN rerun_of bigint,
    -- when payload, result, step results and error texts were dropped (redact_after)
    ADD COLUMN redacted_at timestamptz;

-- Retention: finished executions of one task in one state, oldest first.
CREATE INDEX conductor_executions_finished ON conductor_executions (task, state, finished_at)
    WHERE state IN ('succeeded', 'failed', 'cancelled');

-- Save order of steps (rerun from a step copies the ones saved before it); null for steps
-- saved before this migration, which sort first.
CREATE SEQUENCE conductor_steps_seq;
ALTER TABLE conductor_steps ADD COLUMN seq bigint;

-- Per task: how long finished executions are kept, per final state, and when their data is
-- redacted, in seconds; null: the coordinator's default.
ALTER TABLE conductor_tasks
    ADD COLUMN retention_succeeded double precision CHECK (retention_succeeded >= 0),
    ADD COLUMN retention_failed double precision CHECK (retention_failed >= 0),
    ADD COLUMN retention_cancelled double precision CHECK (retention_cancelled >= 0),
    ADD COLUMN redact_after double precision CHECK (redact_after >= 0);

-- How far redaction got, per task and final state: executions that finished before
-- `through` are redacted, so a pass starts there instead of scanning them again.
CREATE TABLE conductor_redaction_marks (
    task text NOT NULL,
    state conductor_execution_state NOT NULL,
    through timestamptz NOT NULL,
    PRIMARY KEY (task, state)
);
