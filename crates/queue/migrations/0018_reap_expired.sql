-- queue_reap_expired(default_max_attempts): rows whose lease expired (the worker crashed or
-- stopped heartbeating) go back to waiting (2 → 1, 6 → 3), the attempt counted; a row that has
-- used its last attempt goes to 4 (Erreur) with error_message saying its lease expired.
-- Invariant: only rows past their lease are touched, and each at most once per expiry: the claim
-- token is cleared, so the former owner's late renew/complete/fail/release is refused. Rows locked
-- by a running transition are skipped (SKIP LOCKED) and reaped on a later pass, so any number of
-- reapers may run at once. Rows in a working status without a lease (claimed by the older system)
-- are left alone: operators requeue them by hand (docs/queue.md).
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
           SET attemtps = coalesce(q.attemtps, 0) + 1,
               status_id = CASE
                   WHEN coalesce(q.attemtps, 0) + 1 >= coalesce(q.max_attempts, p_default_max_attempts) THEN 4
                   ELSE 1 END,
               error_message = 'lease expired: worker ' || coalesce(q.worker_id, '?')
                               || ' stopped renewing it (attempt ' || (coalesce(q.attemtps, 0) + 1) || ')',
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
           SET ocr_attempts = coalesce(q.ocr_attempts, 0) + 1,
               status_id = CASE
                   WHEN coalesce(q.ocr_attempts, 0) + 1 >= coalesce(q.ocr_max_attempts, p_default_max_attempts) THEN 4
                   ELSE 3 END,
               ocr_error = 'lease expired: worker ' || coalesce(q.ocr_worker_id, '?')
                           || ' stopped renewing it (attempt ' || (coalesce(q.ocr_attempts, 0) + 1) || ')',
               ocr_last_error_at = now(),
               error_message = CASE
                   WHEN coalesce(q.ocr_attempts, 0) + 1 >= coalesce(q.ocr_max_attempts, p_default_max_attempts)
                   THEN 'OCR lease expired: worker ' || coalesce(q.ocr_worker_id, '?') || ' stopped renewing it'
                   ELSE q.error_message END,
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
