-- Prefetched leases that never started: when a worker's stream ends, its coordinator marks
-- the leases the worker had said were still waiting for a pool process (lease_unstarted).
-- If such a lease then expires, the reaper returns the execution to the queue without
-- counting an attempt, at most a few times per execution (unstarted_returns), so that a run
-- that kills its worker before the worker's "started" notice got out cannot loop forever.
-- Any renewal (the worker came back) and any new lease clear the mark.

ALTER TABLE conductor_executions
    ADD COLUMN lease_unstarted boolean NOT NULL DEFAULT false,
    ADD COLUMN unstarted_returns integer NOT NULL DEFAULT 0;
