-- Connected workers, so that any coordinator can list them.

CREATE TABLE conductor_workers (
    worker_id text PRIMARY KEY,
    hostname text NOT NULL,
    pid integer NOT NULL,
    tasks text[] NOT NULL,
    coordinator text NOT NULL,
    leases integer NOT NULL DEFAULT 0,
    connected_at timestamptz NOT NULL,
    last_seen timestamptz NOT NULL,
    disconnected_at timestamptz
);
