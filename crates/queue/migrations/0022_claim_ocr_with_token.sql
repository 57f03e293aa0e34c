-- queue_claim_ocr(worker, source, lease_ms, claim_token): claim the oldest downloaded row of one
-- document_source for OCR (3 → 6) under a claim token the CLIENT chose.
-- Invariant: at most one OCR worker ever holds a row (FOR UPDATE SKIP LOCKED, oldest first, rows in
-- OCR backoff skipped), and a claim whose answer the client never received can always be undone by
-- queue_release_claim(p_claim_token) (0023), which gives the row back without an attempt; a claim
-- whose token was already cancelled claims nothing. The per-token advisory lock serializes claim
-- and release, so in either order the row ends waiting. Returns the claimed row or none.
CREATE OR REPLACE FUNCTION queue_claim_ocr(p_worker_id text, p_source text, p_lease_ms integer, p_claim_token uuid)
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
         WHERE q.status_id = 3
           AND q.document_source = p_source
           AND (q.ocr_next_attempt_at IS NULL OR q.ocr_next_attempt_at <= now())
         ORDER BY q.created_at, q.id
         LIMIT 1
           FOR UPDATE SKIP LOCKED
    )
    UPDATE extraction_queue q
       SET status_id = 6,
           ocr_worker_id = p_worker_id,
           claim_token = p_claim_token,
           ocr_started_at = now(),
           ocr_lease_expires_at = now() + p_lease_ms * interval '1 millisecond',
           updated_at = now()
      FROM next
     WHERE q.id = next.id
    RETURNING q.id, q.claim_token, q.document_source::text, q.document_number::text,
              q.document_number_normalized::text, q.circonscription_fonciere::text,
              q.cadastre::text, q.designation_secondaire::text, q.acte_type::text,
              q.supabase_path::text, coalesce(q.ocr_attempts, 0)::integer,
              q.ocr_max_attempts::integer, q.ocr_lease_expires_at;
END
$$;
