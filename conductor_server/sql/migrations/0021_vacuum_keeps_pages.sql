-- Vacuum does not give the churning tables' empty trailing pages back to the file system.
--
-- A vacuum that finds empty pages at the end of a table truncates them, and to do that it
-- takes the table's ACCESS EXCLUSIVE lock: every lease, invoke and completion waits behind
-- it (PostgreSQL checks for waiters only every 20 ms, and a standby replays the lock too).
-- A queue table empties and refills all the time, so its tail is often empty: in S9 (the
-- retention soak) the executions table was cut from 57 to 34 MiB and grew back within
-- seconds, and every cut was a stall for leasing. With vacuum_truncate off the pages stay
-- allocated and are reused by the next inserts (the free space map records them), so the
-- table stays at its working size instead of shrinking and regrowing. An operator who wants
-- the space back after a one-off spike runs VACUUM (TRUNCATE) on the table at a quiet time.
ALTER TABLE conductor_executions SET (vacuum_truncate = false);
ALTER TABLE conductor_steps SET (vacuum_truncate = false);
ALTER TABLE conductor_attempts SET (vacuum_truncate = false);
ALTER TABLE conductor_events SET (vacuum_truncate = false);
ALTER TABLE conductor_waits SET (vacuum_truncate = false);
