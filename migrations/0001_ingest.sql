-- Ingest: raw requests, normalized events, dedupe keys, destinations and the delivery jobs
-- created in the same transaction as the events they deliver.

CREATE TABLE destinations (
    name text PRIMARY KEY,
    url text NOT NULL,
    routes text[] NOT NULL DEFAULT '{}',
    -- The Standard Webhooks signing secret; never returned by any API.
    signing_secret text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every request that was answered 2xx with something stored: its exact headers and body, so
-- that it can be replayed through a plugin later (quarantined requests have no events yet).
CREATE TABLE raw_requests (
    id uuid PRIMARY KEY,
    source_name text NOT NULL,
    received_at timestamptz NOT NULL,
    method text NOT NULL,
    path text NOT NULL,
    query text NOT NULL,
    -- lz4 compresses these large values several times faster than the default pglz.
    headers jsonb COMPRESSION lz4 NOT NULL,
    body bytea COMPRESSION lz4 NOT NULL,
    status text NOT NULL CHECK (status IN ('accepted', 'quarantined')),
    plugin text NOT NULL,
    error text
);
CREATE INDEX raw_requests_quarantined ON raw_requests (received_at) WHERE status = 'quarantined';
CREATE INDEX raw_requests_source_received ON raw_requests (source_name, received_at);

CREATE TABLE events (
    id uuid PRIMARY KEY,
    raw_request_id uuid NOT NULL REFERENCES raw_requests (id) ON DELETE CASCADE,
    source_name text NOT NULL,
    event_id text NOT NULL,
    event_type text NOT NULL,
    event_source text NOT NULL,
    subject text,
    time text NOT NULL,
    -- The event data as the plugin wrote it (one JSON document), kept byte for byte.
    data text COMPRESSION lz4 NOT NULL,
    route_keys text[] NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX events_raw_request ON events (raw_request_id);
CREATE INDEX events_source_created ON events (source_name, created_at);

-- One row per (source, event id) seen within the dedupe window. The primary key is what makes
-- deduplication hold across concurrent requests and host processes.
CREATE TABLE dedupe_keys (
    source_name text NOT NULL,
    event_id text NOT NULL,
    event_row_id uuid NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (source_name, event_id)
);

CREATE TABLE delivery_jobs (
    id uuid PRIMARY KEY,
    event_row_id uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    destination_name text NOT NULL REFERENCES destinations (name) ON DELETE CASCADE,
    state text NOT NULL DEFAULT 'due'
        CHECK (state IN ('due', 'running', 'retrying', 'delivered', 'failed', 'dead')),
    attempt integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    lease_expires_at timestamptz,
    created_at timestamptz NOT NULL
);
CREATE INDEX delivery_jobs_event ON delivery_jobs (event_row_id);
CREATE INDEX delivery_jobs_due ON delivery_jobs (next_attempt_at) WHERE state IN ('due', 'retrying');
