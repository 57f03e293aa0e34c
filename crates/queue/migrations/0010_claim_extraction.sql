-- queue_claim_extraction(worker, lease_ms): claim the oldest waiting row for extraction (1 → 2).
-- Invariant: at most one worker ever holds a row. FOR UPDATE SKIP LOCKED makes concurrent
-- claimers pass over each other's candidate rows instead of waiting on them or taking the same one;
-- rows whose backoff (next_attempt_at) is still in the future are not claimable yet. The claim
-- sets the owner, a fresh fencing token (claim_token) and the lease expiry; it returns the claimed
-- row, or no row when nothing is waiting.
CREATE OR REPLACE FUNCTION queue_claim_extraction(p_worker_id text, p_lease_ms integer)
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
         WHERE q.status_id = 1
           AND (q.next_attempt_at IS NULL OR q.next_attempt_at <= now())
         ORDER BY q.created_at, q.id
         LIMIT 1
           FOR UPDATE SKIP LOCKED
    )
    UPDATE extraction_queue q
       SET status_id = 2,
           worker_id = p_worker_id,
           claim_token = gen_random_uuid(),
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
