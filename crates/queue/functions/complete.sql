-- functions/complete.sql: the successful ends of the two stages: the PDF is stored
-- (queue_complete_extraction), the text is extracted (queue_complete_ocr). Both are fenced by the
-- claim token and end the claim.

-- queue_complete_extraction(id, claim_token, supabase_path[, fetched_as]): the PDF is stored (2 → 3,
-- or 2 → 5 for plan_cadastraux, which has no OCR stage).
-- Invariant (fencing): applies only if the caller still holds the row (same claim_token, status 2);
-- a worker whose lease was reaped and whose row was claimed again gets false and changes nothing.
-- On success the claim ends: token and lease are cleared, supabase_path is recorded, and so is
-- fetched_as (column of migration 0041: what delivered the document after the fetcher's fallbacks;
-- NULL when the caller gives none, so a 3-argument call still works: the 3-argument signature of an
-- earlier release is dropped by migration 0101, so no call is ambiguous).
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

-- queue_complete_ocr(id, claim_token, file_content, boosted_file_content[, index_data]): the text
-- is extracted (6 → 5, final).
-- Invariant (fencing): applies only if the caller still holds the row (same claim_token, status 6);
-- otherwise returns false and changes nothing. On success both texts and ocr_completed_at are
-- written and the OCR claim ends (token and lease cleared). index_data (migration 0070, the index
-- des immeubles as data) is written only here, in the same statement that takes the row to 5; a
-- NULL p_index_data keeps the column as it is (acte and plan rows, engines that read no table), so
-- a four-argument call behaves as before (the four-argument signature is dropped by migration 0101).
CREATE OR REPLACE FUNCTION queue_complete_ocr(
    p_id uuid, p_claim_token uuid, p_file_content text, p_boosted_file_content text,
    p_index_data jsonb DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    UPDATE extraction_queue q
       SET status_id = 5,
           file_content = p_file_content,
           boosted_file_content = p_boosted_file_content,
           index_data = COALESCE(p_index_data, q.index_data),
           ocr_completed_at = now(),
           ocr_error = NULL,
           claim_token = NULL,
           ocr_lease_expires_at = NULL,
           ocr_next_attempt_at = NULL,
           updated_at = now()
     WHERE q.id = p_id
       AND q.claim_token = p_claim_token
       AND q.status_id = 6;
    RETURN FOUND;
END
$$;
