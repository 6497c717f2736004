-- Sources live in the database, like destinations, so that the admin API can manage them and
-- every host process serves the same ones. Config-declared sources are upserted at start.
CREATE TABLE sources (
    name text PRIMARY KEY,
    plugin text NOT NULL,
    -- The plugin's per-source configuration, passed to configure() as is.
    config text NOT NULL DEFAULT '',
    signature_tolerance_seconds bigint,
    rate_limit_requests_per_second double precision,
    rate_limit_burst integer,
    -- Overrides of the plugin limits: deadline_ms, max_memory_bytes, max_output_bytes,
    -- max_log_bytes; absent keys keep the server's defaults.
    limit_overrides jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Bumped by every change, secrets included, so host processes see what to rebuild.
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Several secrets may match at once, so that a secret is rotated without downtime: add the
-- new one, move the sender over, retire the old one. `origin` says who owns a row: secrets
-- written in the config file are replaced from it at start; the others only by the API.
CREATE TABLE source_secrets (
    id uuid PRIMARY KEY,
    source_name text NOT NULL REFERENCES sources (name) ON DELETE CASCADE,
    secret text NOT NULL,
    origin text NOT NULL CHECK (origin IN ('config', 'api')),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source_name, secret)
);

-- A destination signs every delivery with each of its secrets (Standard Webhooks carries
-- several signatures in one header), so receivers can move to a new secret at their pace.
CREATE TABLE destination_secrets (
    id uuid PRIMARY KEY,
    destination_name text NOT NULL REFERENCES destinations (name) ON DELETE CASCADE,
    secret text NOT NULL,
    origin text NOT NULL CHECK (origin IN ('config', 'api', 'generated')),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (destination_name, secret)
);

INSERT INTO destination_secrets (id, destination_name, secret, origin)
SELECT gen_random_uuid(), name, signing_secret, 'config'
FROM destinations WHERE signing_secret IS NOT NULL;

ALTER TABLE destinations DROP COLUMN signing_secret;
