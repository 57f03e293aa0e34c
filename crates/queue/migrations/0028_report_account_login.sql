-- queue_report_account_login(id, success): what the registry said to a login with this account.
-- Invariant: a refused login adds exactly one to failure_count; an accepted one resets it to 0
-- and sets last_used. Accounts are lent fewest failures first (0025), so a refused account sinks.
-- Returns whether the account exists.
CREATE OR REPLACE FUNCTION queue_report_account_login(p_id uuid, p_success boolean)
RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    UPDATE worker_accounts a
       SET failure_count = CASE WHEN p_success THEN 0 ELSE a.failure_count + 1 END,
           last_used = CASE WHEN p_success THEN now() ELSE a.last_used END,
           updated_at = now()
     WHERE a.id = p_id;
    RETURN FOUND;
END
$$;
