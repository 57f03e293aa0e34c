-- queue_complete_extraction_and_claim(id, claim_token, supabase_path, worker, lease_ms,
-- next_claim_token): a busy registre worker's completion and its next claim in ONE round trip
-- (and one commit), instead of two.
-- Invariant: exactly queue_complete_extraction (0013) followed by queue_claim_extraction (0021)
-- in one transaction, so each keeps its own invariant: the completion applies only while the
-- caller holds the row (fencing), and the claim takes the oldest claimable status-1 row under the
-- client's fresh token (undoable by queue_release_claim). The claim runs whether or not the
-- completion applied. Returns one row: `completed`, then the claimed row's columns (all NULL when
-- nothing was claimable).
CREATE OR REPLACE FUNCTION queue_complete_extraction_and_claim(
    p_id uuid, p_claim_token uuid, p_supabase_path text,
    p_worker_id text, p_lease_ms integer, p_next_claim_token uuid)
RETURNS TABLE (
    completed boolean,
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
DECLARE
    v_completed boolean;
BEGIN
    v_completed := queue_complete_extraction(p_id, p_claim_token, p_supabase_path);
    RETURN QUERY
    SELECT v_completed, c.*
      FROM (SELECT 1) AS one
      LEFT JOIN LATERAL queue_claim_extraction(p_worker_id, p_lease_ms, p_next_claim_token) AS c ON true;
END
$$;
