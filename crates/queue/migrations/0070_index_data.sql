-- 0070 index_data: the index des immeubles as structured data (inscriptions, parties, radiations;
-- docs/ocr.md, Structured index), a jsonb column written by the OCR completion of `index` rows.
-- Invariant: index_data is written only in the same statement that takes a row from 6 to 5
-- (queue_complete_ocr, fenced by claim_token like before), or by registrectl index-backfill on a
-- row already at 5 that has none; a NULL p_index_data keeps the column as it is (acte and plan rows,
-- engines that read no table), so callers that pass four arguments behave exactly as before.
ALTER TABLE extraction_queue ADD COLUMN IF NOT EXISTS index_data jsonb;

-- The four-argument version (0014) is replaced, not overloaded: with both present a four-argument
-- call would be ambiguous.
DROP FUNCTION IF EXISTS queue_complete_ocr(uuid, uuid, text, text);

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
