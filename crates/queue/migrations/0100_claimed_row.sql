-- 0100 claimed row: the row both claim functions return (functions/claim.sql), defined once as a
-- composite type instead of one RETURNS TABLE list per claim function. Its columns are those the
-- claims returned before (names, types, order), so callers (`SELECT * FROM queue_claim_...`, the
-- REST /rpc/ calls) read the same thing:
--   attempts / max_attempts / lease_expires_at are the claimed stage's (attemtps, max_attempts,
--   lease_expires_at for extraction; ocr_attempts, ocr_max_attempts, ocr_lease_expires_at for OCR).
-- Invariant: after this file the type exists with these columns, whether the database had it or
-- not; no table and no row changes (a type is not a table: creating it locks nothing workers use).
DO $$
BEGIN
    IF to_regtype('queue_claimed_row') IS NULL THEN
        CREATE TYPE queue_claimed_row AS (
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
        );
    END IF;
END
$$;
