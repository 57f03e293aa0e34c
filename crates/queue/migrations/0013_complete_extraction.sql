-- queue_complete_extraction(id, claim_token, supabase_path[, fetched_as]): the PDF is stored (2 → 3,
-- or 2 → 5 for plan_cadastraux, which has no OCR stage).
-- Invariant (fencing): applies only if the caller still holds the row (same claim_token, status 2);
-- a worker whose lease was reaped and whose row was claimed again gets false and changes nothing.
-- On success the claim ends: token and lease are cleared, supabase_path is recorded, and so is
-- fetched_as (column added by 0041: what delivered the document after the fetcher's fallbacks; NULL
-- when the caller gives none, so a 3-argument call still works).
-- The 3-argument version is dropped first: left beside this one, every 3-argument call would be
-- ambiguous between the two. Both statements run in one transaction, so no caller sees neither.
DROP FUNCTION IF EXISTS queue_complete_extraction(uuid, uuid, text);
CREATE OR REPLACE FUNCTION queue_complete_extraction(
    p_id uuid, p_claim_token uuid, p_supabase_path text, p_fetched_as text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    UPDATE extraction_queue q
       SET status_id = CASE WHEN q.document_source = 'plan_cadastraux' THEN 5 ELSE 3 END,
           supabase_path = p_supabase_path,
           fetched_as = p_fetched_as,
           error_message = NULL,
           claim_token = NULL,
           lease_expires_at = NULL,
           next_attempt_at = NULL,
           updated_at = now()
     WHERE q.id = p_id
       AND q.claim_token = p_claim_token
       AND q.status_id = 2;
    RETURN FOUND;
END
$$;
