-- queue_renew_lease(id, claim_token, lease_ms): heartbeat of the worker holding a row, either
-- stage (status 2 extends lease_expires_at, status 6 extends ocr_lease_expires_at).
-- Invariant (fencing): applies only while the caller's claim is the row's current claim (same
-- claim_token, row still in a working status). Returns false once the row was reaped, released
-- or completed: the caller has lost the row and must stop working on it.
CREATE OR REPLACE FUNCTION queue_renew_lease(p_id uuid, p_claim_token uuid, p_lease_ms integer)
RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    UPDATE extraction_queue q
       SET lease_expires_at = CASE WHEN q.status_id = 2
                                   THEN now() + p_lease_ms * interval '1 millisecond'
                                   ELSE q.lease_expires_at END,
           ocr_lease_expires_at = CASE WHEN q.status_id = 6
                                       THEN now() + p_lease_ms * interval '1 millisecond'
                                       ELSE q.ocr_lease_expires_at END
     WHERE q.id = p_id
       AND q.claim_token = p_claim_token
       AND q.status_id IN (2, 6);
    RETURN FOUND;
END
$$;
