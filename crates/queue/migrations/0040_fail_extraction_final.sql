-- queue_fail_extraction_final(id, claim_token, error): the fetch failed because of the row's own
-- data (the registry rejected it: a lot that does not exist, a circonscription it does not offer),
-- so retrying cannot help and no backoff is spent.
-- Invariant (fencing): applies only if the caller still holds the row (same claim_token, status 2);
-- otherwise returns no row and changes nothing. When it applies, attemtps grows by exactly one,
-- error_message records the error, and the row goes to 4 (Erreur) at once, whatever max_attempts
-- is: next_attempt_at, claim_token and lease_expires_at are cleared, worker_id is kept (who failed it).
-- Returns the row's new (status_id, attempts, next_attempt_at), shaped like queue_fail_extraction.
CREATE OR REPLACE FUNCTION queue_fail_extraction_final(p_id uuid, p_claim_token uuid, p_error text)
RETURNS TABLE (status_id integer, attempts integer, next_attempt_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    UPDATE extraction_queue q
       SET attemtps = coalesce(q.attemtps, 0) + 1,
           status_id = 4,
           next_attempt_at = NULL,
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
