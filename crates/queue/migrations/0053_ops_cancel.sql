-- ops_cancel(id, reason): an operator cancels a row that is waiting (1, 3) or in progress (2, 6).
-- Invariant: only such a row changes, in one statement: it goes to 4 (Erreur, final) with
-- error_message = reason (which says who cancelled), and its claim token and leases are cleared, so
-- a worker still holding it is fenced off: its renew / complete / fail / release (all of which
-- require the token and a working status) change nothing. Final rows (4, 5) are refused as is.
-- Returns (outcome, status_id): 'cancelled' (status_id 4), 'refused' (the unchanged current
-- status) or 'not_found' (NULL).
CREATE OR REPLACE FUNCTION ops_cancel(p_id uuid, p_reason text)
RETURNS TABLE (outcome text, status_id integer)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    current_status integer;
BEGIN
    UPDATE extraction_queue q
       SET status_id = 4,
           error_message = p_reason,
           claim_token = NULL,
           lease_expires_at = NULL,
           ocr_lease_expires_at = NULL,
           next_attempt_at = NULL,
           ocr_next_attempt_at = NULL,
           updated_at = now()
     WHERE q.id = p_id
       AND q.status_id IN (1, 2, 3, 6);
    IF FOUND THEN
        RETURN QUERY SELECT 'cancelled'::text, 4;
        RETURN;
    END IF;
    SELECT q.status_id INTO current_status FROM extraction_queue q WHERE q.id = p_id;
    IF FOUND THEN
        RETURN QUERY SELECT 'refused'::text, current_status;
    ELSE
        RETURN QUERY SELECT 'not_found'::text, NULL::integer;
    END IF;
END
$$;
