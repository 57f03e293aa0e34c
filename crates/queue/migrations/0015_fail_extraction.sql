-- queue_fail_extraction(id, claim_token, error, backoff_base_ms, backoff_max_ms,
-- default_max_attempts): the fetch failed.
-- Invariant (fencing): applies only if the caller still holds the row (same claim_token, status 2);
-- otherwise returns no row and changes nothing. When it applies, attemtps grows by exactly one and
-- error_message records the error; then either
--   attemtps < max_attempts  → back to 1, not claimable before now() + min(max, base × 2^(attemtps−1))
--   attemtps ≥ max_attempts  → 4 (Erreur), final.
-- max_attempts is the row's own, or default_max_attempts when the row has none.
-- Returns the row's new (status_id, attempts, next_attempt_at).
CREATE OR REPLACE FUNCTION queue_fail_extraction(
    p_id uuid, p_claim_token uuid, p_error text,
    p_backoff_base_ms integer, p_backoff_max_ms integer, p_default_max_attempts integer)
RETURNS TABLE (status_id integer, attempts integer, next_attempt_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    UPDATE extraction_queue q
       SET attemtps = coalesce(q.attemtps, 0) + 1,
           status_id = CASE
               WHEN coalesce(q.attemtps, 0) + 1 >= coalesce(q.max_attempts, p_default_max_attempts) THEN 4
               ELSE 1 END,
           next_attempt_at = CASE
               WHEN coalesce(q.attemtps, 0) + 1 >= coalesce(q.max_attempts, p_default_max_attempts) THEN NULL
               ELSE now() + least(p_backoff_max_ms::double precision,
                                  p_backoff_base_ms * power(2::double precision, least(coalesce(q.attemtps, 0), 40)))
                            * interval '1 millisecond' END,
           worker_id = CASE
               WHEN coalesce(q.attemtps, 0) + 1 >= coalesce(q.max_attempts, p_default_max_attempts) THEN q.worker_id
               ELSE NULL END,
           error_message = p_error,
           claim_token = NULL,
           lease_expires_at = NULL,
           updated_at = now()
     WHERE q.id = p_id
       AND q.claim_token = p_claim_token
       AND q.status_id = 2
    RETURNING q.status_id::integer, q.attemtps::integer, q.next_attempt_at;
END
$$;
