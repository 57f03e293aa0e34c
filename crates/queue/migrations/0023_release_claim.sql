-- queue_release_claim(claim_token): undo a claim whose answer the client never received (its call
-- timed out or the connection broke while Postgres committed), either stage (2 → 1, 6 → 3).
-- Invariant: afterwards no row is held under p_claim_token and none ever will be. The token is
-- recorded as cancelled first, under the same per-token advisory lock the claim functions take:
-- a claim that already committed is undone here (no attempt counted, no backoff: claimable at
-- once), a claim still running finishes first and is then undone, and a claim arriving later sees
-- the cancelled token and claims nothing. Idempotent: calling it again changes nothing.
-- Cancelled tokens older than a day are forgotten (a claim request is never that late).
-- Returns how many rows went back to waiting (0 or 1).
CREATE OR REPLACE FUNCTION queue_release_claim(p_claim_token uuid)
RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    n integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('queue_claim:' || p_claim_token::text, 0));
    INSERT INTO queue_cancelled_claims (claim_token) VALUES (p_claim_token)
        ON CONFLICT (claim_token) DO NOTHING;
    UPDATE extraction_queue q
       SET status_id = CASE WHEN q.status_id = 2 THEN 1 ELSE 3 END,
           worker_id = CASE WHEN q.status_id = 2 THEN NULL ELSE q.worker_id END,
           ocr_worker_id = CASE WHEN q.status_id = 6 THEN NULL ELSE q.ocr_worker_id END,
           claim_token = NULL,
           lease_expires_at = NULL,
           ocr_lease_expires_at = NULL,
           updated_at = now()
     WHERE q.claim_token = p_claim_token
       AND q.status_id IN (2, 6);
    GET DIAGNOSTICS n = ROW_COUNT;
    DELETE FROM queue_cancelled_claims c WHERE c.cancelled_at < now() - interval '1 day';
    RETURN n;
END
$$;
