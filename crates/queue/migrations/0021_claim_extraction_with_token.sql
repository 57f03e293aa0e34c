-- queue_claim_extraction(worker, lease_ms, claim_token): claim the oldest waiting row for
-- extraction (1 → 2) under a claim token the CLIENT chose.
-- Invariant: at most one worker ever holds a row (FOR UPDATE SKIP LOCKED, oldest first, rows in
-- backoff skipped), and a claim whose answer the client never received can always be undone: the
-- row is marked with p_claim_token, so queue_release_claim(p_claim_token) (0023) gives it back
-- without an attempt; a claim whose token was already cancelled (the release ran first, the claim
-- request arrived late) claims nothing. The per-token advisory lock serializes the two, so
-- whichever order they reach the server in, the row ends waiting. Returns the claimed row or none.
CREATE OR REPLACE FUNCTION queue_claim_extraction(p_worker_id text, p_lease_ms integer, p_claim_token uuid)
RETURNS TABLE (
    id uuid,
    claim_token uuid,
    document_source text,
    document_number text,
    document_number_normalized text,
    circonscription_fonciere text,
    cadastre text,
    designation_secondaire text,
    acte_type text,
    supabase_path text,
    attempts integer,
    max_attempts integer,
    lease_expires_at timestamptz
)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('queue_claim:' || p_claim_token::text, 0));
    IF EXISTS (SELECT 1 FROM queue_cancelled_claims c WHERE c.claim_token = p_claim_token) THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH next AS (
        SELECT q.id
          FROM extraction_queue q
         WHERE q.status_id = 1
           AND (q.next_attempt_at IS NULL OR q.next_attempt_at <= now())
         ORDER BY q.created_at, q.id
         LIMIT 1
           FOR UPDATE SKIP LOCKED
    )
    UPDATE extraction_queue q
       SET status_id = 2,
           worker_id = p_worker_id,
           claim_token = p_claim_token,
           processing_started_at = now(),
           lease_expires_at = now() + p_lease_ms * interval '1 millisecond',
           updated_at = now()
      FROM next
     WHERE q.id = next.id
    RETURNING q.id, q.claim_token, q.document_source::text, q.document_number::text,
              q.document_number_normalized::text, q.circonscription_fonciere::text,
              q.cadastre::text, q.designation_secondaire::text, q.acte_type::text,
              q.supabase_path::text, coalesce(q.attemtps, 0)::integer, q.max_attempts::integer,
              q.lease_expires_at;
END
$$;
