-- The ingest path writes a raw request, its events and their jobs in one transaction, so the
-- foreign keys from events to raw_requests and from delivery_jobs to events and destinations
-- only cost: each inserted row ran a trigger that looked up and share-locked its parent (three
-- statements per webhook, and a multixact on the destination row that every concurrent batch
-- locked). The store keeps the same integrity itself: retention deletes a request's events and
-- jobs with it, and deleting a destination deletes its jobs while holding an advisory lock that
-- every ingest batch writing jobs holds shared (see store::ingest, store::destinations and
-- store::retention). Hosts of earlier versions still count on the cascades, so they must be
-- stopped before a host of this version migrates: no rolling upgrade across this migration.
ALTER TABLE events DROP CONSTRAINT events_raw_request_id_fkey;
ALTER TABLE delivery_jobs DROP CONSTRAINT delivery_jobs_event_row_id_fkey;
ALTER TABLE delivery_jobs DROP CONSTRAINT delivery_jobs_destination_name_fkey;
