-- Replays restart a job's retry schedule without reusing attempt numbers: finishing an attempt
-- is guarded by its number, so numbers must only grow.
ALTER TABLE delivery_jobs ADD COLUMN attempt_base integer NOT NULL DEFAULT 0;
