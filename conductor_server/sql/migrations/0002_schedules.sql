-- Cron schedules (static from task definitions, dynamic from the API) and their fires.

CREATE TABLE conductor_schedules (
    task text NOT NULL,
    name text NOT NULL,
    cron text NOT NULL,
    timezone text NOT NULL DEFAULT 'UTC',
    payload jsonb NOT NULL DEFAULT 'null',
    -- static schedules come from @task(cron=...) and are replaced at each registration
    static boolean NOT NULL DEFAULT false,
    -- what to do with fires missed while no coordinator ran: latest | skip | all
    missed text NOT NULL DEFAULT 'latest' CHECK (missed IN ('latest', 'skip', 'all')),
    missed_limit integer NOT NULL DEFAULT 1 CHECK (missed_limit >= 1),
    next_fire_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (task, name)
);

CREATE INDEX conductor_schedules_due ON conductor_schedules (next_fire_at);

ALTER TABLE conductor_executions
    ADD COLUMN schedule text,
    ADD COLUMN fire_time timestamptz,
    ADD CHECK ((schedule IS NULL) = (fire_time IS NULL));

-- Exactly one execution per (schedule, fire time), however many coordinators fire it.
CREATE UNIQUE INDEX conductor_executions_fire
    ON conductor_executions (task, schedule, fire_time) WHERE schedule IS NOT NULL;
