-- queue_complete_ocr(id, claim_token, file_content, boosted_file_content): the text is extracted
-- (6 → 5, final).
-- Invariant (fencing): applies only if the caller still holds the row (same claim_token, status 6);
-- otherwise returns false and changes nothing. On success both texts and ocr_completed_at are
-- written and the OCR claim ends (token and lease cleared).
CREATE OR REPLACE FUNCTION queue_complete_ocr(
    p_id uuid, p_claim_token uuid, p_file_content text, p_boosted_file_content text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    UPDATE extraction_queue q
       SET status_id = 5,
           file_content = p_file_content,
           boosted_file_content = p_boosted_file_content,
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
