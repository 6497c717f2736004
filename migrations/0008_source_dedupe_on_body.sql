-- Whether a source whose signature covers only the body dedupes on the body and event type
-- (on by default; off for senders that repeat a body on purpose).
ALTER TABLE sources ADD COLUMN dedupe_on_body boolean NOT NULL DEFAULT true;
