-- Retention deletes old rows in small batches; these indexes let each batch find its rows
-- without scanning the tables.
CREATE INDEX delivery_attempts_started ON delivery_attempts (started_at);
CREATE INDEX dedupe_keys_created ON dedupe_keys (created_at);
CREATE INDEX raw_requests_received ON raw_requests (received_at);
