-- functions/fail.sql: a worker gives its row back without completing it: the stage failed
-- (queue_fail_extraction, queue_fail_ocr: one attempt counted, back off or Erreur at the maximum,
-- through queue_count_attempt), the registry refused the row's own data (queue_fail_extraction_final:
-- Erreur at once, its own rule) or the browser crashed (queue_release_after_crash: a crash counted
-- instead of an attempt, same rule with the crash limit and no backoff). Every one is fenced by the
-- claim token. (Giving a row back without counting anything, queue_release, is in claim.sql.)

-- queue_fail_extraction(id, claim_token, error, backoff_base_ms, backoff_max_ms,
-- default_max_attempts): the fetch failed.
-- Invariant (fencing): applies only if the caller still holds the row (same claim_token, status 2);
-- otherwise returns no row and changes nothing. When it applies, attemtps grows by exactly one and
-- error_message records the error; then (queue_count_attempt) either
--   attemtps < max_attempts  → back to 1, not claimable before now() + min(max, base × 2^(attemtps−1))
--   attemtps ≥ max_attempts  → 4 (Erreur), final, worker_id kept (who failed it).
-- max_attempts is the row's own, or default_max_attempts when the row has none.
-- Returns the row's new (status_id, attempts, next_attempt_at).
CREATE OR REPLACE FUNCTION queue_fail_extraction(
    p_id uuid, p_claim_token uuid, p_error text,
    p_backoff_base_ms integer, p_backoff_max_ms integer, p_default_max_attempts integer)
RETURNS TABLE (status_id integer, attempts integer, next_attempt_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    UPDATE extraction_queue q
       SET (attemtps, status_id, next_attempt_at, worker_id) = (
               SELECT a.attempts, a.status_id, a.retry_at, CASE WHEN a.final THEN q.worker_id END
                 FROM queue_count_attempt(q.attemtps, q.max_attempts, p_default_max_attempts, 1,
                                          p_backoff_base_ms, p_backoff_max_ms) a),
           error_message = p_error,
           claim_token = NULL,
           lease_expires_at = NULL,
           updated_at = now()
     WHERE q.id = p_id
       AND q.claim_token = p_claim_token
       AND q.status_id = 2
    RETURNING q.status_id::integer, q.attemtps::integer, q.next_attempt_at;
END
$$;

-- queue_fail_ocr(id, claim_token, error, backoff_base_ms, backoff_max_ms, default_max_attempts):
-- the OCR of a downloaded document failed.
-- Invariant (fencing): applies only if the caller still holds the row (same claim_token, status 6);
-- otherwise returns no row and changes nothing. When it applies, ocr_attempts grows by exactly one,
-- ocr_error and ocr_last_error_at record the error; then (queue_count_attempt) either
--   ocr_attempts < ocr_max_attempts → back to 3, not claimable before
--                                     now() + min(max, base × 2^(ocr_attempts−1))
--   ocr_attempts ≥ ocr_max_attempts → 4 (Erreur) with error_message, final.
-- Returns the row's new (status_id, attempts, next_attempt_at).
CREATE OR REPLACE FUNCTION queue_fail_ocr(
    p_id uuid, p_claim_token uuid, p_error text,
    p_backoff_base_ms integer, p_backoff_max_ms integer, p_default_max_attempts integer)
RETURNS TABLE (status_id integer, attempts integer, next_attempt_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    UPDATE extraction_queue q
       SET (ocr_attempts, status_id, ocr_next_attempt_at, ocr_worker_id, error_message) = (
               SELECT a.attempts, a.status_id, a.retry_at, CASE WHEN a.final THEN q.ocr_worker_id END,
                      CASE WHEN a.final THEN p_error ELSE q.error_message END
                 FROM queue_count_attempt(q.ocr_attempts, q.ocr_max_attempts, p_default_max_attempts, 3,
                                          p_backoff_base_ms, p_backoff_max_ms) a),
           ocr_error = p_error,
           ocr_last_error_at = now(),
           claim_token = NULL,
           ocr_lease_expires_at = NULL,
           updated_at = now()
     WHERE q.id = p_id
       AND q.claim_token = p_claim_token
       AND q.status_id = 6
    RETURNING q.status_id::integer, q.ocr_attempts::integer, q.ocr_next_attempt_at;
END
$$;

-- queue_fail_extraction_final(id, claim_token, error): the fetch failed because of the row's own
-- data (the registry rejected it: a lot that does not exist, a circonscription it does not offer),
-- so retrying cannot help and no backoff is spent.
-- Invariant (fencing): applies only if the caller still holds the row (same claim_token, status 2);
-- otherwise returns no row and changes nothing. When it applies, attemtps grows by exactly one,
-- error_message records the error, and the row goes to 4 (Erreur) at once, whatever max_attempts
-- is (its own rule, not queue_count_attempt's): next_attempt_at, claim_token and lease_expires_at
-- are cleared, worker_id is kept (who failed it).
-- Returns the row's new (status_id, attempts, next_attempt_at), shaped like queue_fail_extraction.
CREATE OR REPLACE FUNCTION queue_fail_extraction_final(p_id uuid, p_claim_token uuid, p_error text)
RETURNS TABLE (status_id integer, attempts integer, next_attempt_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    UPDATE extraction_queue q
       SET attemtps = coalesce(q.attemtps, 0) + 1,
           status_id = 4,
           next_attempt_at = NULL,
           error_message = p_error,
           claim_token = NULL,
           lease_expires_at = NULL,
           updated_at = now()
     WHERE q.id = p_id
       AND q.claim_token = p_claim_token
       AND q.status_id = 2
    RETURNING q.status_id::integer, q.attemtps::integer, q.next_attempt_at;
END
$$;

-- queue_release_after_crash(id, claim_token, error, max_crashes): the browser crashed while
-- fetching this row's document (extraction stage, status 2).
-- Invariant (fencing): applies only if the caller still holds the row (same claim_token, status 2);
-- otherwise returns no row and changes nothing. When it applies, browser_crashes grows by exactly
-- one and no attempt is counted (a crash usually says nothing about the document); but a row can
-- never loop forever: once browser_crashes reaches p_max_crashes (queue_count_attempt on the crash
-- counter, no backoff) the row goes to 4 (Erreur) with error_message saying the browser crashed that
-- many times on it, worker_id kept. Below that it goes back to 1, claimable at once, error_message
-- recording the crash.
-- Returns the row's new (status_id, browser_crashes).
CREATE OR REPLACE FUNCTION queue_release_after_crash(
    p_id uuid, p_claim_token uuid, p_error text, p_max_crashes integer)
RETURNS TABLE (status_id integer, browser_crashes integer)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    UPDATE extraction_queue q
       SET (browser_crashes, status_id, error_message, worker_id) = (
               SELECT a.attempts, a.status_id,
                      CASE WHEN a.final
                           THEN 'the browser crashed ' || a.attempts || ' times on this document (limit '
                                || p_max_crashes || '): ' || p_error
                           ELSE 'browser crash ' || a.attempts || ' of ' || p_max_crashes
                                || ' (no attempt counted): ' || p_error END,
                      CASE WHEN a.final THEN q.worker_id END
                 FROM queue_count_attempt(q.browser_crashes, p_max_crashes, p_max_crashes, 1, NULL, NULL) a),
           claim_token = NULL,
           lease_expires_at = NULL,
           updated_at = now()
     WHERE q.id = p_id
       AND q.claim_token = p_claim_token
       AND q.status_id = 2
    RETURNING q.status_id, q.browser_crashes;
END
$$;
