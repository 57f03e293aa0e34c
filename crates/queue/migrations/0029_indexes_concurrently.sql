-- migrate: no-transaction
-- 0029 indexes, built CONCURRENTLY so the old system's writes to a busy production
-- extraction_queue go on while they build (a plain CREATE INDEX blocks every write for the whole
-- build). This file runs outside the migration transaction, one statement at a time (the
-- `-- migrate: no-transaction` first line); the runner drops an INVALID index left by an
-- interrupted concurrent build before building it again, and bounds every lock wait with
-- QUEUE_MIGRATE_LOCK_TIMEOUT_MS, retrying with backoff.
-- Invariant: only adds indexes; never changes a row; applying it twice changes nothing.
-- The two claim paths: oldest waiting row first, only rows of that status in the index.
CREATE INDEX CONCURRENTLY IF NOT EXISTS extraction_queue_claim_extraction_idx
    ON extraction_queue (created_at, id) WHERE status_id = 1;
CREATE INDEX CONCURRENTLY IF NOT EXISTS extraction_queue_claim_ocr_idx
    ON extraction_queue (document_source, created_at, id) WHERE status_id = 3;
-- The reaper's two scans: leases of rows being worked on.
CREATE INDEX CONCURRENTLY IF NOT EXISTS extraction_queue_extraction_lease_idx
    ON extraction_queue (lease_expires_at) WHERE status_id = 2;
CREATE INDEX CONCURRENTLY IF NOT EXISTS extraction_queue_ocr_lease_idx
    ON extraction_queue (ocr_lease_expires_at) WHERE status_id = 6;
-- queue_release_claim finds a row by the claim token it was claimed under.
CREATE INDEX CONCURRENTLY IF NOT EXISTS extraction_queue_claim_token_idx
    ON extraction_queue (claim_token) WHERE status_id IN (2, 6);
