-- 0056 privileges of the repairs registrectl and registre-monitor call (ops_retry_errors,
-- ops_requeue_stuck): for the service role only, as the other ops and queue functions (0069, 0090).
-- Invariant: on Supabase, anon and authenticated cannot call them; service_role and direct
-- connections can. Without those roles this only revokes from PUBLIC.
DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'ops_retry_errors(text, timestamptz)',
        'ops_requeue_stuck(bigint, integer, text)'
    ] LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
            EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM anon', f);
        END IF;
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
            EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM authenticated', f);
        END IF;
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO service_role', f);
        END IF;
    END LOOP;
END
$$;
