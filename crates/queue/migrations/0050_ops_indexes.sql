-- migrate: no-transaction
-- 0050 ops indexes: what the operators' queries (registre-ops: API, dashboard, metrics) read.
-- Built CONCURRENTLY outside the migration transaction (first line), so writers go on meanwhile.
-- Invariant: only adds indexes (IF NOT EXISTS); no row or column changes. Each one serves one
-- query of crates/ops, so /api/overview and /metrics stay fast with 100,000+ rows:
--   status_source  counts per status × source (an index-only scan instead of a table scan)
--   list           the jobs list, newest first, keyset pagination on (created_at, id)
--   status_list    the same list filtered by status
--   completed      completions per minute over the last hour (rows that reached status 5)
--   updated        the last change of an environment (the dashboard refreshes its jobs table then)
--   identity       enqueue's "identical document already waiting or in progress" look-up
CREATE INDEX CONCURRENTLY IF NOT EXISTS extraction_queue_status_source_idx
    ON extraction_queue (status_id, document_source);
CREATE INDEX CONCURRENTLY IF NOT EXISTS extraction_queue_list_idx
    ON extraction_queue (created_at DESC, id DESC);
CREATE INDEX CONCURRENTLY IF NOT EXISTS extraction_queue_status_list_idx
    ON extraction_queue (status_id, created_at DESC, id DESC);
CREATE INDEX CONCURRENTLY IF NOT EXISTS extraction_queue_completed_idx
    ON extraction_queue (updated_at) WHERE status_id = 5;
CREATE INDEX CONCURRENTLY IF NOT EXISTS extraction_queue_updated_idx
    ON extraction_queue (updated_at);
CREATE INDEX CONCURRENTLY IF NOT EXISTS extraction_queue_identity_idx
    ON extraction_queue (document_source, document_number) WHERE status_id IN (1, 2, 3, 6);
