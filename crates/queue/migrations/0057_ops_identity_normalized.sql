-- migrate: no-transaction
-- 0057: rows of an older system get their normalized number, and enqueue's identity look-up gets
-- its index, without a long lock: run outside a transaction, statement by statement (first line).
-- Invariant: the normalization commits every 1,000 rows (one short transaction per batch, locked
-- rows skipped, only rows whose document_number_normalized is NULL and only that column changed:
-- the batch of ops_normalize_document_numbers, functions/ops.sql, written out here because a
-- migration runs before the functions band), so no row stays locked for longer than one batch and
-- workers go on meanwhile; the index is built CONCURRENTLY; nothing else changes.
-- The DO block is one line: the migration runner splits no-transaction files at lines ending in ';'.
DO $$ DECLARE n integer; BEGIN LOOP WITH todo AS (SELECT q.id FROM extraction_queue q WHERE q.document_number_normalized IS NULL AND q.document_number IS NOT NULL LIMIT 1000 FOR UPDATE SKIP LOCKED) UPDATE extraction_queue q SET document_number_normalized = regexp_replace(q.document_number, '[[:space:]]', '', 'g') FROM todo WHERE q.id = todo.id; GET DIAGNOSTICS n = ROW_COUNT; COMMIT; EXIT WHEN n = 0; END LOOP; END $$;
-- ops_enqueue's "identical document already waiting or in progress" (functions/ops.sql): the source
-- and the normalized number (the number without whitespace where an older row has no normalized value).
CREATE INDEX CONCURRENTLY IF NOT EXISTS extraction_queue_identity_normalized_idx
    ON extraction_queue (document_source, (coalesce(document_number_normalized, regexp_replace(document_number, '[[:space:]]', '', 'g'))))
    WHERE status_id IN (1, 2, 3, 6);
