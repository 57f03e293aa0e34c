-- functions/accounts.sql: the registry logins (worker_accounts) lent to registre workers under a
-- lease: acquire, renew, release, and the registry's answer to a login. Fenced by the holder token.

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

-- queue_report_account_login(id, success): what the registry said to a login with this account.
-- Invariant: a refused login adds exactly one to failure_count; an accepted one resets it to 0
-- and sets last_used. Accounts are lent fewest failures first (queue_acquire_account), so a refused account sinks.
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
