-- Log lines handlers write through ctx.logger, forwarded by their worker and kept with the
-- execution (deleted with it). At most --max-log-lines per execution (insert_log_lines
-- counts under lock_log_lines); `conductor logs ID` and ListLogs read them.

CREATE TABLE conductor_execution_logs (
    sequence bigserial PRIMARY KEY,
    execution_id bigint NOT NULL REFERENCES conductor_executions (id) ON DELETE CASCADE,
    attempt integer NOT NULL,
    level text NOT NULL,
    message text NOT NULL,
    logged_at timestamptz NOT NULL
);

CREATE INDEX conductor_execution_logs_execution
    ON conductor_execution_logs (execution_id, sequence);
