-- queue_release_after_crash(id, claim_token, error, max_crashes): the browser crashed while
-- fetching this row's document (extraction stage, status 2).
-- Invariant (fencing): applies only if the caller still holds the row (same claim_token, status 2);
-- otherwise returns no row and changes nothing. When it applies, browser_crashes grows by exactly
-- one and no attempt is counted (a crash usually says nothing about the document); but a row can
-- never loop forever: once browser_crashes reaches p_max_crashes the row goes to 4 (Erreur) with
-- error_message saying the browser crashed that many times on it. Below that it goes back to 1,
-- claimable at once, error_message recording the crash.
-- Returns the row's new (status_id, browser_crashes).
CREATE OR REPLACE FUNCTION queue_release_after_crash(
    p_id uuid, p_claim_token uuid, p_error text, p_max_crashes integer)
RETURNS TABLE (status_id integer, browser_crashes integer)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    UPDATE extraction_queue q
       SET browser_crashes = coalesce(q.browser_crashes, 0) + 1,
           status_id = CASE WHEN coalesce(q.browser_crashes, 0) + 1 >= p_max_crashes THEN 4 ELSE 1 END,
           error_message = CASE
               WHEN coalesce(q.browser_crashes, 0) + 1 >= p_max_crashes
               THEN 'the browser crashed ' || (coalesce(q.browser_crashes, 0) + 1)
                    || ' times on this document (limit ' || p_max_crashes || '): ' || p_error
               ELSE 'browser crash ' || (coalesce(q.browser_crashes, 0) + 1) || ' of ' || p_max_crashes
                    || ' (no attempt counted): ' || p_error END,
           worker_id = CASE WHEN coalesce(q.browser_crashes, 0) + 1 >= p_max_crashes THEN q.worker_id ELSE NULL END,
           claim_token = NULL,
           lease_expires_at = NULL,
           updated_at = now()
     WHERE q.id = p_id
       AND q.claim_token = p_claim_token
       AND q.status_id = 2
    RETURNING q.status_id, q.browser_crashes;
END
$$;
