-- queue_renew_account(id, holder, lease_ms): heartbeat of the worker using a registry account.
-- Invariant (fencing): extends the lease only while p_holder still holds it (not released, not
-- expired and taken by another holder); returns false otherwise, so a holder that lost its
-- account knows it.
CREATE OR REPLACE FUNCTION queue_renew_account(p_id uuid, p_holder text, p_lease_ms integer)
RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    UPDATE worker_accounts a
       SET lease_expires_at = now() + p_lease_ms * interval '1 millisecond'
     WHERE a.id = p_id
       AND a.lease_holder = p_holder
       AND a.lease_expires_at IS NOT NULL;
    RETURN FOUND;
END
$$;
