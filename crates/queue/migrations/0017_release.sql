-- queue_release(id, claim_token): give a row back on shutdown, either stage (2 → 1, 6 → 3).
-- Invariant (fencing): applies only if the caller still holds the row (same claim_token, working
-- status); otherwise returns false. No attempt is counted and no backoff is set: the row is
-- claimable again at once, by any worker.
CREATE OR REPLACE FUNCTION queue_release(p_id uuid, p_claim_token uuid)
RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    UPDATE extraction_queue q
       SET status_id = CASE WHEN q.status_id = 2 THEN 1 ELSE 3 END,
           worker_id = CASE WHEN q.status_id = 2 THEN NULL ELSE q.worker_id END,
           ocr_worker_id = CASE WHEN q.status_id = 6 THEN NULL ELSE q.ocr_worker_id END,
           claim_token = NULL,
           lease_expires_at = NULL,
           ocr_lease_expires_at = NULL,
           updated_at = now()
     WHERE q.id = p_id
       AND q.claim_token = p_claim_token
       AND q.status_id IN (2, 6);
    RETURN FOUND;
END
$$;
