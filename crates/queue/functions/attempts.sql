-- functions/attempts.sql: the one rule "count an attempt; back off, or Erreur at the maximum",
-- which every path that counts an attempt (or a browser crash) calls from its UPDATE: fail
-- (fail.sql), release after a browser crash (fail.sql), the reaper (reap.sql) and the operators'
-- requeue of stuck rows (ops.sql). A path with another rule keeps its own (queue_fail_extraction_final:
-- Erreur at once, whatever the count).

-- queue_count_attempt(count, max, default_max, waiting_status, backoff_base_ms, backoff_max_ms):
-- what one more attempt makes of a row whose counter (attemtps, ocr_attempts or browser_crashes)
-- is `count` (NULL: 0). Returns (attempts, status_id, retry_at, final):
--   attempts  count + 1
--   final     attempts ≥ max (the row's own), or ≥ default_max when the row has none; NULL (so:
--             not final) when both are NULL, as a NULL comparison always was in these paths
--   status_id 4 (Erreur) when final, else waiting_status (1 for extraction, 3 for OCR)
--   retry_at  NULL when final or when no backoff is given (base NULL); else
--             now() + min(backoff_max_ms, backoff_base_ms × 2^min(count, 40)) milliseconds
-- Invariant: pure arithmetic on its arguments and now(): reads and writes no table, so the caller's
-- UPDATE (and its fencing: claim token, status, SKIP LOCKED) alone decides which rows change, and
-- every caller counts exactly one attempt per call.
CREATE OR REPLACE FUNCTION queue_count_attempt(
    p_count integer, p_max integer, p_default_max integer, p_waiting_status integer,
    p_backoff_base_ms integer, p_backoff_max_ms integer,
    OUT attempts integer, OUT status_id integer, OUT retry_at timestamptz, OUT final boolean)
LANGUAGE sql STABLE AS $$
    SELECT c.n,
           CASE WHEN c.at_max THEN 4 ELSE p_waiting_status END,
           CASE WHEN c.at_max OR p_backoff_base_ms IS NULL THEN NULL
                ELSE now() + least(p_backoff_max_ms::double precision,
                                   p_backoff_base_ms * power(2::double precision, least(coalesce(p_count, 0), 40)))
                             * interval '1 millisecond' END,
           c.at_max
      FROM (SELECT coalesce(p_count, 0) + 1 AS n,
                   coalesce(p_count, 0) + 1 >= coalesce(p_max, p_default_max) AS at_max) c
$$;
