-- ops_normalize_document_numbers(batch): fills document_number_normalized (the number with its
-- whitespace removed, as crates/ops validate.rs computes it) of at most `batch` rows where it is
-- NULL (rows written by an older system), so ops_enqueue's duplicate check matches them through
-- the plain column. Called in batches by migration 0057 (one short transaction each).
-- Invariant: only rows whose document_number_normalized is NULL change, and only that column (no
-- status, no updated_at: normalizing is not a state change); rows locked by a running transition
-- are skipped (SKIP LOCKED), never waited for, so workers are not held up; at most `batch` rows per
-- call. Returns how many rows it normalized (0: none left that it could lock).
CREATE OR REPLACE FUNCTION ops_normalize_document_numbers(p_batch integer)
RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    n integer;
BEGIN
    WITH todo AS (
        SELECT q.id
          FROM extraction_queue q
         WHERE q.document_number_normalized IS NULL
           AND q.document_number IS NOT NULL
         LIMIT greatest(p_batch, 1)
           FOR UPDATE SKIP LOCKED
    )
    UPDATE extraction_queue q
       SET document_number_normalized = regexp_replace(q.document_number, '[[:space:]]', '', 'g')
      FROM todo
     WHERE q.id = todo.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
