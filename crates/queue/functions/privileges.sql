-- functions/privileges.sql: the queue functions (the workers') and the ops functions (registrectl,
-- registre-api, registre-monitor) are for the service role only. This is the ONE list of them: the
-- function files set no privileges, and this file is applied last, in the same transaction as any
-- function file that changed (so a function dropped and created again, e.g. for a new result type,
-- is never callable by anon in between). A function added to any file is covered by adding its
-- signature here (crates/queue/tests/privileges.rs fails for a queue_* or ops_* function left out).
-- queue_notify_claimable (notify.sql) is not listed: it returns trigger, so nobody can call it.
-- Invariant: on Supabase, the anon and authenticated roles (reachable with the public anon key)
-- cannot call any queue or ops function; service_role and direct connections can. On a plain
-- Postgres without those roles this file only revokes from PUBLIC. Ends by asking PostgREST to
-- reload its schema cache so /rest/v1/rpc/ sees the functions at once (a no-op without PostgREST).
DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'queue_count_attempt(integer, integer, integer, integer, integer, integer)',
        'queue_lock_claim_token(uuid)',
        'queue_give_back(uuid, uuid)',
        'queue_renew_lease(uuid, uuid, integer)',
        'queue_complete_extraction(uuid, uuid, text, text)',
        'queue_complete_ocr(uuid, uuid, text, text, jsonb)',
        'queue_fail_extraction(uuid, uuid, text, integer, integer, integer)',
        'queue_fail_ocr(uuid, uuid, text, integer, integer, integer)',
        'queue_release(uuid, uuid)',
        'queue_reap_expired(integer)',
        'queue_count_waiting()',
        'queue_claim_extraction(text, integer, uuid)',
        'queue_claim_ocr(text, text, integer, uuid)',
        'queue_release_claim(uuid)',
        'queue_release_after_crash(uuid, uuid, text, integer)',
        'queue_acquire_account(text, integer)',
        'queue_renew_account(uuid, text, integer)',
        'queue_release_account(uuid, text)',
        'queue_report_account_login(uuid, boolean)',
        'queue_fail_extraction_final(uuid, uuid, text)',
        'ops_enqueue(text, text, text, text, text, text, text)',
        'ops_retry(uuid)',
        'ops_cancel(uuid, text)',
        'ops_retry_errors(text, timestamptz, integer)',
        'ops_requeue_stuck(bigint, integer, text)',
        'ops_normalize_document_numbers(integer)'
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

NOTIFY pgrst, 'reload schema';
