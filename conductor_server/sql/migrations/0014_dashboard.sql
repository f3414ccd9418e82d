-- The dashboard (#17): what a worker accepts at once (over all its tasks, as registered), so
-- that ListWorkers can show capacity next to the leases held; 0 for rows written before.
ALTER TABLE conductor_workers ADD COLUMN capacity integer NOT NULL DEFAULT 0;
