-- How many later arrivals of an event id were answered as duplicates within the dedupe
-- window, so operators see which senders retry (shown with each event by the admin API).
ALTER TABLE dedupe_keys ADD COLUMN duplicates_suppressed integer NOT NULL DEFAULT 0;
