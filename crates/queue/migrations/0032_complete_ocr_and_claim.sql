-- queue_complete_ocr_and_claim(id, claim_token, file_content, boosted_file_content, worker,
-- source, lease_ms, next_claim_token): a busy OCR worker's completion and its next claim (of its
-- current mode's source) in ONE round trip and one commit.
-- Invariant: exactly queue_complete_ocr (0014) followed by queue_claim_ocr (0022) in one
-- transaction, so each keeps its own invariant (fencing on the completion; oldest claimable
-- status-3 row of p_source under the client's fresh, undoable token for the claim). The claim runs
-- whether or not the completion applied. Returns one row: `completed`, then the claimed row's
-- columns (all NULL when nothing was claimable).
CREATE OR REPLACE FUNCTION queue_complete_ocr_and_claim(
    p_id uuid, p_claim_token uuid, p_file_content text, p_boosted_file_content text,
    p_worker_id text, p_source text, p_lease_ms integer, p_next_claim_token uuid)
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
    v_completed := queue_complete_ocr(p_id, p_claim_token, p_file_content, p_boosted_file_content);
    RETURN QUERY
    SELECT v_completed, c.*
      FROM (SELECT 1) AS one
      LEFT JOIN LATERAL queue_claim_ocr(p_worker_id, p_source, p_lease_ms, p_next_claim_token) AS c ON true;
END
$$;
