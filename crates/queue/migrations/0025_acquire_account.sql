-- queue_acquire_account(holder, lease_ms): lend a registry login (worker_accounts) to one worker.
-- Invariant: an account is held by at most one holder at a time, on every server and through
-- either backend: only active accounts whose lease is free (never taken, released, or expired
-- because its holder stopped renewing it: a crashed worker never keeps an account) are lent, under
-- FOR UPDATE SKIP LOCKED so two acquirers never take the same one. Fewest failures first, then
-- least recently used. Sets lease_holder (the caller's own token, presented to renew / release /
-- report), lease_expires_at and last_used. Returns the account, or no row when none is free.
CREATE OR REPLACE FUNCTION queue_acquire_account(p_holder text, p_lease_ms integer)
RETURNS TABLE (id uuid, username text, password text)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH next AS (
        SELECT a.id
          FROM worker_accounts a
         WHERE coalesce(a.is_active, true)
           AND (a.lease_expires_at IS NULL OR a.lease_expires_at < now())
         ORDER BY a.failure_count, a.last_used NULLS FIRST, a.username
         LIMIT 1
           FOR UPDATE SKIP LOCKED
    )
    UPDATE worker_accounts a
       SET lease_holder = p_holder,
           lease_expires_at = now() + p_lease_ms * interval '1 millisecond',
           last_used = now(),
           updated_at = now()
      FROM next
     WHERE a.id = next.id
    RETURNING a.id, a.username::text, a.password::text;
END
$$;
