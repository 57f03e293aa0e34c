-- ops_requeue_stuck(older_than_ms, default_max_attempts, by): rows in a working status (2 or 6)
-- WITHOUT a lease, i.e. claimed by an older system that never set one, and untouched for longer than
-- `older_than_ms` (measured from the row's last update, updated_at, not from its claim: a row an
-- older system claimed long ago but still writes to is not stuck), go back to waiting (2 → 1, 6 → 3), the attempt counted and error_message saying
-- who requeued them and why; a row that has used its last attempt goes to Erreur (4) instead.
-- (Rows WITH an expired lease are queue_reap_expired's, 0018.)
-- Invariant: a row holding a lease is never touched (its worker is alive or the reaper handles
-- it); each stuck row is requeued once (its status changes, so a second pass does not see it);
-- rows locked by a running transition are skipped (SKIP LOCKED), so any number of monitors and
-- registrectl runs may call this at once.
-- Returns (extraction, ocr): how many rows of each stage were requeued.
CREATE OR REPLACE FUNCTION ops_requeue_stuck(p_older_than_ms bigint, p_default_max_attempts integer, p_by text)
RETURNS TABLE (extraction integer, ocr integer)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    n_extraction integer;
    n_ocr integer;
    cutoff timestamptz := now() - make_interval(secs => p_older_than_ms / 1000.0);
BEGIN
    WITH stuck AS (
        SELECT q.id
          FROM extraction_queue q
         WHERE q.status_id = 2
           AND q.lease_expires_at IS NULL
           AND coalesce(q.updated_at, q.processing_started_at, q.created_at) < cutoff
           FOR UPDATE SKIP LOCKED
    ), requeued AS (
        UPDATE extraction_queue q
           SET attemtps = coalesce(q.attemtps, 0) + 1,
               status_id = CASE
                   WHEN coalesce(q.attemtps, 0) + 1 >= coalesce(q.max_attempts, p_default_max_attempts) THEN 4
                   ELSE 1 END,
               error_message = 'requeued by ' || p_by || ': in En traitement without a lease (claimed by '
                               || coalesce(q.worker_id, 'an older system') || ') since '
                               || to_char(coalesce(q.updated_at, q.processing_started_at, q.created_at) AT TIME ZONE 'UTC',
                                          'YYYY-MM-DD HH24:MI:SS') || ' UTC (attempt ' || (coalesce(q.attemtps, 0) + 1) || ')',
               worker_id = NULL,
               claim_token = NULL,
               updated_at = now()
          FROM stuck
         WHERE q.id = stuck.id
        RETURNING 1
    )
    SELECT count(*) INTO n_extraction FROM requeued;

    WITH stuck AS (
        SELECT q.id
          FROM extraction_queue q
         WHERE q.status_id = 6
           AND q.ocr_lease_expires_at IS NULL
           AND coalesce(q.updated_at, q.ocr_started_at, q.created_at) < cutoff
           FOR UPDATE SKIP LOCKED
    ), requeued AS (
        UPDATE extraction_queue q
           SET ocr_attempts = coalesce(q.ocr_attempts, 0) + 1,
               status_id = CASE
                   WHEN coalesce(q.ocr_attempts, 0) + 1 >= coalesce(q.ocr_max_attempts, p_default_max_attempts) THEN 4
                   ELSE 3 END,
               ocr_error = 'requeued by ' || p_by || ': in OCR en traitement without a lease (claimed by '
                           || coalesce(q.ocr_worker_id, 'an older system') || ')',
               ocr_last_error_at = now(),
               error_message = 'requeued by ' || p_by || ': in OCR en traitement without a lease (claimed by '
                               || coalesce(q.ocr_worker_id, 'an older system') || ') since '
                               || to_char(coalesce(q.updated_at, q.ocr_started_at, q.created_at) AT TIME ZONE 'UTC',
                                          'YYYY-MM-DD HH24:MI:SS') || ' UTC (OCR attempt ' || (coalesce(q.ocr_attempts, 0) + 1) || ')',
               ocr_worker_id = NULL,
               claim_token = NULL,
               updated_at = now()
          FROM stuck
         WHERE q.id = stuck.id
        RETURNING 1
    )
    SELECT count(*) INTO n_ocr FROM requeued;

    RETURN QUERY SELECT n_extraction, n_ocr;
END
$$;
