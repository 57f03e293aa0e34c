-- ops_retry(id): an operator retries a row in Erreur (4).
-- Invariant: only a status-4 row changes, in one statement. It goes back to 3 (OCR only) when its
-- PDF is stored (supabase_path) and only the OCR stage failed (ocr_attempts > 0 or ocr_error set);
-- otherwise back to 1 (fetch again). The retried stage's attempts are reset (both when going back
-- to 1), backoffs, leases, owners, claim token and errors are cleared, so any worker may claim it at
-- once; going back to 1 also resets the browser crash count (0024), so a retried document gets its
-- full MAX_BROWSER_CRASHES again. Any other status is refused and left as is.
-- Returns (outcome, status_id): outcome 'retried' (status_id = the new status), 'refused'
-- (status_id = the unchanged current status) or 'not_found' (status_id NULL).
CREATE OR REPLACE FUNCTION ops_retry(p_id uuid)
RETURNS TABLE (outcome text, status_id integer)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    new_status integer;
    current_status integer;
BEGIN
    UPDATE extraction_queue q
       SET status_id = CASE
               WHEN q.supabase_path IS NOT NULL
                AND (coalesce(q.ocr_attempts, 0) > 0 OR q.ocr_error IS NOT NULL) THEN 3
               ELSE 1 END,
           attemtps = CASE
               WHEN q.supabase_path IS NOT NULL
                AND (coalesce(q.ocr_attempts, 0) > 0 OR q.ocr_error IS NOT NULL) THEN q.attemtps
               ELSE 0 END,
           ocr_attempts = 0,
           browser_crashes = CASE
               WHEN q.supabase_path IS NOT NULL
                AND (coalesce(q.ocr_attempts, 0) > 0 OR q.ocr_error IS NOT NULL) THEN q.browser_crashes
               ELSE 0 END,
           error_message = NULL,
           ocr_error = NULL,
           worker_id = NULL,
           ocr_worker_id = NULL,
           claim_token = NULL,
           lease_expires_at = NULL,
           ocr_lease_expires_at = NULL,
           next_attempt_at = NULL,
           ocr_next_attempt_at = NULL,
           updated_at = now()
     WHERE q.id = p_id
       AND q.status_id = 4
    RETURNING q.status_id INTO new_status;
    IF FOUND THEN
        RETURN QUERY SELECT 'retried'::text, new_status;
        RETURN;
    END IF;
    SELECT q.status_id INTO current_status FROM extraction_queue q WHERE q.id = p_id;
    IF FOUND THEN
        RETURN QUERY SELECT 'refused'::text, current_status;
    ELSE
        RETURN QUERY SELECT 'not_found'::text, NULL::integer;
    END IF;
END
$$;
