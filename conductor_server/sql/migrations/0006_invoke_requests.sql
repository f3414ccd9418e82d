-- Idempotency records of Invoke / InvokeBatch calls that carried a request_id: a retried call
-- with the same id gets the first call's answer and creates nothing. The primary key is what
-- makes this hold when retries race. Records older than idempotency.RETENTION are deleted a
-- few at a time by later keyed invokes (claim_invoke_request).

CREATE TABLE conductor_invoke_requests (
    request_id text PRIMARY KEY,
    task text NOT NULL,
    -- number of payloads of the call (1 for Invoke), checked on a retry
    size integer NOT NULL,
    -- the ids the first call answered, in payload order (filled in its own transaction)
    execution_ids bigint[] NOT NULL DEFAULT '{}',
    -- false when the first call returned an existing execution (dedupe_key)
    created boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL
);

CREATE INDEX conductor_invoke_requests_created ON conductor_invoke_requests (created_at);
