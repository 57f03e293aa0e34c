-- ops_retry_errors(source, since): an operator retries every row in Erreur (4), optionally only of
-- one document_source and only those that failed (updated_at) at or after `since`
-- (registrectl retry --errors [--source S] [--since T]).
-- Invariant: each row goes through ops_retry (0052), so a bulk retry means exactly what one retry
-- means (3 when only OCR failed and the PDF is stored, else 1; attempts reset); rows locked by a
-- running transition are skipped (SKIP LOCKED) rather than waited for, and nothing but status-4
-- rows matching the filters changes. Returns how many rows were retried.
CREATE OR REPLACE FUNCTION ops_retry_errors(p_source text, p_since timestamptz)
RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    r record;
    n integer := 0;
    result record;
BEGIN
    FOR r IN
        SELECT q.id
          FROM extraction_queue q
         WHERE q.status_id = 4
           AND (p_source IS NULL OR q.document_source::text = p_source)
           AND (p_since IS NULL OR q.updated_at >= p_since)
         ORDER BY q.updated_at
           FOR UPDATE SKIP LOCKED
    LOOP
        SELECT * INTO result FROM ops_retry(r.id);
        IF result.outcome = 'retried' THEN
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END
$$;
