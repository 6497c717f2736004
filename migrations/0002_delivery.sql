-- Delivery: per-destination settings, job bookkeeping and every attempt.

ALTER TABLE destinations
    ADD COLUMN headers jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN timeout_ms integer NOT NULL DEFAULT 15000,
    -- Delay before each attempt, in milliseconds; the first is usually 0.
    ADD COLUMN retry_schedule_ms integer[] NOT NULL DEFAULT '{0,5000,300000,1800000,7200000,18000000,36000000,36000000}',
    ADD COLUMN throttle_min_delay_ms integer NOT NULL DEFAULT 60000,
    ADD COLUMN max_concurrency integer NOT NULL DEFAULT 16,
    ADD COLUMN rate_limit_per_second double precision,
    ADD COLUMN paused boolean NOT NULL DEFAULT false,
    ADD COLUMN allow_private_networks boolean NOT NULL DEFAULT false,
    ADD COLUMN retry_client_errors boolean NOT NULL DEFAULT false,
    ADD COLUMN breaker_failure_threshold integer NOT NULL DEFAULT 10,
    ADD COLUMN breaker_cooldown_ms integer NOT NULL DEFAULT 60000;

ALTER TABLE delivery_jobs
    ADD COLUMN last_status integer,
    ADD COLUMN last_error text,
    ADD COLUMN finished_at timestamptz;

CREATE INDEX delivery_jobs_running_lease ON delivery_jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX delivery_jobs_dead ON delivery_jobs (destination_name) WHERE state = 'dead';

CREATE TABLE delivery_attempts (
    id uuid PRIMARY KEY,
    job_id uuid NOT NULL REFERENCES delivery_jobs (id) ON DELETE CASCADE,
    attempt integer NOT NULL,
    started_at timestamptz NOT NULL,
    duration_ms integer NOT NULL,
    status_code integer,
    -- The first few KB of the response body.
    response_body text,
    error text,
    outcome text NOT NULL
);
CREATE INDEX delivery_attempts_job ON delivery_attempts (job_id, attempt);
