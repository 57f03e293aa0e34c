-- queue_fail_ocr(id, claim_token, error, backoff_base_ms, backoff_max_ms, default_max_attempts):
-- the OCR of a downloaded document failed.
-- Invariant (fencing): applies only if the caller still holds the row (same claim_token, status 6);
-- otherwise returns no row and changes nothing. When it applies, ocr_attempts grows by exactly one,
-- ocr_error and ocr_last_error_at record the error; then either
--   ocr_attempts < ocr_max_attempts → back to 3, not claimable before
--                                     now() + min(max, base × 2^(ocr_attempts−1))
--   ocr_attempts ≥ ocr_max_attempts → 4 (Erreur) with error_message, final.
-- Returns the row's new (status_id, attempts, next_attempt_at).
CREATE OR REPLACE FUNCTION queue_fail_ocr(
    p_id uuid, p_claim_token uuid, p_error text,
    p_backoff_base_ms integer, p_backoff_max_ms integer, p_default_max_attempts integer)
RETURNS TABLE (status_id integer, attempts integer, next_attempt_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    UPDATE extraction_queue q
       SET ocr_attempts = coalesce(q.ocr_attempts, 0) + 1,
           status_id = CASE
               WHEN coalesce(q.ocr_attempts, 0) + 1 >= coalesce(q.ocr_max_attempts, p_default_max_attempts) THEN 4
               ELSE 3 END,
           ocr_next_attempt_at = CASE
               WHEN coalesce(q.ocr_attempts, 0) + 1 >= coalesce(q.ocr_max_attempts, p_default_max_attempts) THEN NULL
               ELSE now() + least(p_backoff_max_ms::double precision,
                                  p_backoff_base_ms * power(2::double precision, least(coalesce(q.ocr_attempts, 0), 40)))
                            * interval '1 millisecond' END,
           ocr_worker_id = CASE
               WHEN coalesce(q.ocr_attempts, 0) + 1 >= coalesce(q.ocr_max_attempts, p_default_max_attempts) THEN q.ocr_worker_id
               ELSE NULL END,
           error_message = CASE
               WHEN coalesce(q.ocr_attempts, 0) + 1 >= coalesce(q.ocr_max_attempts, p_default_max_attempts) THEN p_error
               ELSE q.error_message END,
           ocr_error = p_error,
           ocr_last_error_at = now(),
           claim_token = NULL,
           ocr_lease_expires_at = NULL,
           updated_at = now()
     WHERE q.id = p_id
       AND q.claim_token = p_claim_token
       AND q.status_id = 6
    RETURNING q.status_id::integer, q.ocr_attempts::integer, q.ocr_next_attempt_at;
END
$$;
