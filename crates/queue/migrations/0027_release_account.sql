-- queue_release_account(id, holder): the worker closed its registry session: the account is free.
-- Invariant (fencing): frees the account only if p_holder still holds it, so a late release can
-- never free an account another worker took meanwhile. Idempotent; returns whether it applied.
CREATE OR REPLACE FUNCTION queue_release_account(p_id uuid, p_holder text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    UPDATE worker_accounts a
       SET lease_holder = NULL,
           lease_expires_at = NULL,
           updated_at = now()
     WHERE a.id = p_id
       AND a.lease_holder = p_holder;
    RETURN FOUND;
END
$$;
