-- Retry settings registered before they were bounded (a finite 1e300 was accepted) are
-- brought within the limits registration now enforces (docs/limits.md).
UPDATE conductor_tasks SET
    initial_backoff = least(greatest(initial_backoff, 0.001), 3153600000),
    max_backoff = least(greatest(max_backoff, 0.001), 3153600000),
    backoff_multiplier = least(greatest(backoff_multiplier, 1), 100),
    backoff_jitter = least(greatest(backoff_jitter, 0), 1)
WHERE initial_backoff > 3153600000 OR max_backoff > 3153600000 OR backoff_multiplier > 100
    OR backoff_multiplier < 1 OR backoff_jitter > 1 OR backoff_jitter < 0
    OR initial_backoff <= 0 OR max_backoff <= 0;
