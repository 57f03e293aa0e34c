-- ops_enqueue(source, number, normalized, circonscription, cadastre, designation, acte_type):
-- queue one document (status 1) for an operator (registre-api POST /api/extractions, registrectl).
-- Identity of a document: its source, circonscription, the normalized number (whitespace removed:
-- "4866594" and "4 866 594" are one document) and, for an index or a plan cadastral, the cadastre
-- and désignation secondaire; for an acte, the acte type. A row whose document_number_normalized
-- is NULL (written by an older system) is matched on its number with whitespace removed, the same
-- expression the identity index 0057 serves.
-- Invariant: a document identical in that sense already waiting or in progress (status 1, 2, 3 or
-- 6) is never queued twice, even by concurrent callers: callers with the same identity serialize
-- on one advisory transaction lock, and each looks up before inserting with a fresh snapshot.
-- Returns the row id and whether it was already there (duplicate). Validation of the fields is the
-- caller's (crates/ops validate.rs, which also computes `normalized`); this function trusts them.
CREATE OR REPLACE FUNCTION ops_enqueue(
    p_source text, p_number text, p_normalized text, p_circonscription text,
    p_cadastre text, p_designation text, p_acte_type text)
RETURNS TABLE (id uuid, duplicate boolean)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    existing uuid;
    is_acte boolean := p_source = 'acte';
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(concat_ws(chr(31), 'ops_enqueue', p_source, p_normalized,
        p_circonscription,
        CASE WHEN is_acte THEN NULL ELSE p_cadastre END,
        CASE WHEN is_acte THEN NULL ELSE p_designation END,
        CASE WHEN is_acte THEN p_acte_type END), 0));
    SELECT q.id INTO existing
      FROM extraction_queue q
     WHERE q.document_source = p_source
       AND coalesce(q.document_number_normalized, regexp_replace(q.document_number, '[[:space:]]', '', 'g')) = p_normalized
       AND q.status_id IN (1, 2, 3, 6)
       AND q.circonscription_fonciere IS NOT DISTINCT FROM p_circonscription
       AND (is_acte OR q.cadastre IS NOT DISTINCT FROM p_cadastre)
       AND (is_acte OR q.designation_secondaire IS NOT DISTINCT FROM p_designation)
       AND (NOT is_acte OR q.acte_type IS NOT DISTINCT FROM p_acte_type)
     ORDER BY q.created_at
     LIMIT 1;
    IF existing IS NOT NULL THEN
        RETURN QUERY SELECT existing, true;
        RETURN;
    END IF;
    RETURN QUERY
    INSERT INTO extraction_queue AS q (document_source, document_number, document_number_normalized,
        circonscription_fonciere, cadastre, designation_secondaire, acte_type, status_id)
    VALUES (p_source, p_number, p_normalized, p_circonscription, p_cadastre, p_designation, p_acte_type, 1)
    RETURNING q.id, false;
END
$$;
