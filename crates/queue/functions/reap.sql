-- functions/reap.sql: the reaper's one function: rows whose worker stopped heartbeating go back to
-- waiting, the attempt counted by the same rule as a failure (queue_count_attempt, no backoff).

-- queue_reap_expired(default_max_attempts): rows whose lease expired (the worker crashed or
-- stopped heartbeating) go back to waiting (2 → 1, 6 → 3), the attempt counted; a row that has
-- used its last attempt goes to 4 (Erreur) with error_message saying its lease expired.
-- Invariant: only rows past their lease are touched, and each at most once per expiry: the claim
-- token is cleared, so the former owner's late renew/complete/fail/release is refused. Rows locked
-- by a running transition are skipped (SKIP LOCKED) and reaped on a later pass, so any number of
-- reapers may run at once. Rows in a working status without a lease (claimed by the older system)
-- are left alone: ops_requeue_stuck (ops.sql) is theirs.
-- Returns how many rows were reaped.
CREATE OR REPLACE FUNCTION queue_reap_expired(p_default_max_attempts integer)
RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    n_extraction integer;
    n_ocr integer;
BEGIN
    WITH expired AS (
        SELECT q.id
          FROM extraction_queue q
         WHERE q.status_id = 2 AND q.lease_expires_at < now()
           FOR UPDATE SKIP LOCKED
    ), reaped AS (
        UPDATE extraction_queue q
           SET (attemtps, status_id, error_message) = (
                   SELECT a.attempts, a.status_id,
                          'lease expired: worker ' || coalesce(q.worker_id, '?')
                          || ' stopped renewing it (attempt ' || a.attempts || ')'
                     FROM queue_count_attempt(q.attemtps, q.max_attempts, p_default_max_attempts, 1, NULL, NULL) a),
               worker_id = NULL,
               claim_token = NULL,
               lease_expires_at = NULL,
               updated_at = now()
          FROM expired
         WHERE q.id = expired.id
        RETURNING 1
    )
    SELECT count(*) INTO n_extraction FROM reaped;

    WITH expired AS (
        SELECT q.id
          FROM extraction_queue q
         WHERE q.status_id = 6 AND q.ocr_lease_expires_at < now()
           FOR UPDATE SKIP LOCKED
    ), reaped AS (
        UPDATE extraction_queue q
           SET (ocr_attempts, status_id, ocr_error, error_message) = (
                   SELECT a.attempts, a.status_id,
                          'lease expired: worker ' || coalesce(q.ocr_worker_id, '?')
                          || ' stopped renewing it (attempt ' || a.attempts || ')',
                          CASE WHEN a.final
                               THEN 'OCR lease expired: worker ' || coalesce(q.ocr_worker_id, '?') || ' stopped renewing it'
                               ELSE q.error_message END
                     FROM queue_count_attempt(q.ocr_attempts, q.ocr_max_attempts, p_default_max_attempts, 3, NULL, NULL) a),
               ocr_last_error_at = now(),
               ocr_worker_id = NULL,
               claim_token = NULL,
               ocr_lease_expires_at = NULL,
               updated_at = now()
          FROM expired
         WHERE q.id = expired.id
        RETURNING 1
    )
    SELECT count(*) INTO n_ocr FROM reaped;

    RETURN n_extraction + n_ocr;
END
$$;
