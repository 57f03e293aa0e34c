-- ops_retry_errors(source, since, limit): an operator retries the rows in Erreur (4), optionally
-- only of one document_source and only those that failed (updated_at) at or after `since`, at most
-- `limit` of them, oldest failure first (registrectl retry --errors [--source S] [--since T] calls
-- it in batches until a batch retries fewer than its limit, so no single transaction holds
-- thousands of row locks or outlives the write's statement_timeout).
-- Invariant: each row goes through ops_retry (0052), so a bulk retry means exactly what one retry
-- means (3 when only OCR failed and the PDF is stored, else 1; attempts reset); rows locked by a
-- running transition are skipped (SKIP LOCKED) rather than waited for, nothing but status-4 rows
-- matching the filters changes, and never more than `limit` rows per call. Returns how many rows
-- were retried.
-- The two-argument version (no limit) of an earlier release is dropped: it could retry a whole
-- table in one transaction.
DROP FUNCTION IF EXISTS ops_retry_errors(text, timestamptz);
CREATE OR REPLACE FUNCTION ops_retry_errors(p_source text, p_since timestamptz, p_limit integer)
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
         LIMIT greatest(p_limit, 1)
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
