-- queue_claim_ocr(worker, source, lease_ms): claim the oldest downloaded row of one
-- document_source for OCR (3 → 6).
-- Invariant: at most one OCR worker ever holds a row (FOR UPDATE SKIP LOCKED, oldest first), and
-- only rows of the requested source whose OCR backoff (ocr_next_attempt_at) has passed are taken.
-- The claim sets ocr_worker_id, ocr_started_at, a fresh fencing token and the OCR lease expiry;
-- it returns the claimed row (with supabase_path, where the PDF is), or no row.
CREATE OR REPLACE FUNCTION queue_claim_ocr(p_worker_id text, p_source text, p_lease_ms integer)
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
           claim_token = gen_random_uuid(),
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
