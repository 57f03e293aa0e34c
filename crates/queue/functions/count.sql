-- functions/count.sql: read-only counts for the OCR pool manager.

-- queue_count_waiting(): downloaded rows waiting for OCR (status 3), per document_source, for the
-- OCR pool manager's rebalancing (one grouped query per environment).
-- Invariant: read-only; counts every status-3 row, including those in OCR backoff (they are
-- waiting work all the same). Sources with no waiting row are absent from the result.
CREATE OR REPLACE FUNCTION queue_count_waiting()
RETURNS TABLE (document_source text, waiting bigint)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT q.document_source::text, count(*)
      FROM extraction_queue q
     WHERE q.status_id = 3
     GROUP BY q.document_source;
END
$$;
