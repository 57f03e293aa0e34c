-- functions/claim.sql: a claim's life: taken under a client-chosen token (queue_claim_extraction,
-- queue_claim_ocr), kept alive by heartbeats (queue_renew_lease), undone when its answer was lost
-- (queue_release_claim) or given back on shutdown (queue_release), both through queue_give_back.
-- The claimed row both claims return is one type, queue_claimed_row (migration 0100), so its 13
-- columns are written once.

-- 0021/0022 declared the claims' result with RETURNS TABLE; CREATE OR REPLACE cannot change a
-- result type, so a database that still has those versions drops them first. This runs in the same
-- transaction as the CREATEs below (the whole functions band is one transaction), so no caller ever
-- finds the claim functions missing.
DO $$
BEGIN
    IF (SELECT p.prorettype FROM pg_proc p WHERE p.oid = to_regprocedure('queue_claim_extraction(text, integer, uuid)'))
       IS DISTINCT FROM 'queue_claimed_row'::regtype THEN
        DROP FUNCTION IF EXISTS queue_claim_extraction(text, integer, uuid);
    END IF;
    IF (SELECT p.prorettype FROM pg_proc p WHERE p.oid = to_regprocedure('queue_claim_ocr(text, text, integer, uuid)'))
       IS DISTINCT FROM 'queue_claimed_row'::regtype THEN
        DROP FUNCTION IF EXISTS queue_claim_ocr(text, text, integer, uuid);
    END IF;
END
$$;

-- queue_lock_claim_token(claim_token): the serialization point of a claim token, taken by both
-- claims and by queue_release_claim: the per-token transaction advisory lock, then whether the token
-- is still usable (not cancelled by queue_release_claim).
-- Invariant: claim and release of one token never interleave (the lock is held until the caller's
-- transaction ends), so whichever order they reach the server in, the row ends waiting; changes no row.
CREATE OR REPLACE FUNCTION queue_lock_claim_token(p_claim_token uuid)
RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('queue_claim:' || p_claim_token::text, 0));
    RETURN NOT EXISTS (SELECT 1 FROM queue_cancelled_claims c WHERE c.claim_token = p_claim_token);
END
$$;

-- queue_claim_extraction(worker, lease_ms, claim_token): claim the oldest waiting row for
-- extraction (1 → 2) under a claim token the CLIENT chose.
-- Invariant: at most one worker ever holds a row (FOR UPDATE SKIP LOCKED, oldest first, rows whose
-- backoff next_attempt_at is still in the future skipped), and a claim whose answer the client never
-- received can always be undone: the row is marked with p_claim_token, so
-- queue_release_claim(p_claim_token) gives it back without an attempt; a claim whose token was
-- already cancelled (the release ran first, the claim request arrived late) claims nothing
-- (queue_lock_claim_token). Sets the owner, the token, processing_started_at and the lease expiry.
-- Returns the claimed row (attempts = attemtps, NULL read as 0) or none.
CREATE OR REPLACE FUNCTION queue_claim_extraction(p_worker_id text, p_lease_ms integer, p_claim_token uuid)
RETURNS SETOF queue_claimed_row
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    IF NOT queue_lock_claim_token(p_claim_token) THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH next AS (
        SELECT q.id
          FROM extraction_queue q
         WHERE q.status_id = 1
           AND (q.next_attempt_at IS NULL OR q.next_attempt_at <= now())
         ORDER BY q.created_at, q.id
         LIMIT 1
           FOR UPDATE SKIP LOCKED
    )
    UPDATE extraction_queue q
       SET status_id = 2,
           worker_id = p_worker_id,
           claim_token = p_claim_token,
           processing_started_at = now(),
           lease_expires_at = now() + p_lease_ms * interval '1 millisecond',
           updated_at = now()
      FROM next
     WHERE q.id = next.id
    RETURNING q.id, q.claim_token, q.document_source::text, q.document_number::text,
              q.document_number_normalized::text, q.circonscription_fonciere::text,
              q.cadastre::text, q.designation_secondaire::text, q.acte_type::text,
              q.supabase_path::text, coalesce(q.attemtps, 0)::integer, q.max_attempts::integer,
              q.lease_expires_at;
END
$$;

-- queue_claim_ocr(worker, source, lease_ms, claim_token): claim the oldest downloaded row of one
-- document_source for OCR (3 → 6) under a claim token the CLIENT chose.
-- Invariant: at most one OCR worker ever holds a row (FOR UPDATE SKIP LOCKED, oldest first), only
-- rows of the requested source whose OCR backoff (ocr_next_attempt_at) has passed are taken, and, as
-- for extraction, a claim is undone by queue_release_claim(p_claim_token) and a cancelled token
-- claims nothing. Sets ocr_worker_id, ocr_started_at, the token and the OCR lease expiry.
-- Returns the claimed row (with supabase_path, where the PDF is; attempts = ocr_attempts) or none.
CREATE OR REPLACE FUNCTION queue_claim_ocr(p_worker_id text, p_source text, p_lease_ms integer, p_claim_token uuid)
RETURNS SETOF queue_claimed_row
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    IF NOT queue_lock_claim_token(p_claim_token) THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH next AS (
        SELECT q.id
          FROM extraction_queue q
         WHERE q.status_id = 3
           AND q.document_source = p_source
           AND (q.ocr_next_attempt_at IS NULL OR q.ocr_next_attempt_at <= now())
         ORDER BY q.created_at, q.id
         LIMIT 1
           FOR UPDATE SKIP LOCKED
    )
    UPDATE extraction_queue q
       SET status_id = 6,
           ocr_worker_id = p_worker_id,
           claim_token = p_claim_token,
           ocr_started_at = now(),
           ocr_lease_expires_at = now() + p_lease_ms * interval '1 millisecond',
           updated_at = now()
      FROM next
     WHERE q.id = next.id
    RETURNING q.id, q.claim_token, q.document_source::text, q.document_number::text,
              q.document_number_normalized::text, q.circonscription_fonciere::text,
              q.cadastre::text, q.designation_secondaire::text, q.acte_type::text,
              q.supabase_path::text, coalesce(q.ocr_attempts, 0)::integer,
              q.ocr_max_attempts::integer, q.ocr_lease_expires_at;
END
$$;

-- queue_give_back(id, claim_token): the row held under p_claim_token (and, when p_id is not NULL,
-- with that id) goes back to waiting, either stage (2 → 1, 6 → 3), its owner of that stage, token
-- and leases cleared; shared by queue_release (shutdown) and queue_release_claim (a lost claim).
-- Invariant: nothing is counted (no attempt, no crash) and no backoff is set, so the row is
-- claimable again at once by any worker; only a row still held under that token (status 2 or 6)
-- changes. Returns how many rows went back (0 or 1).
CREATE OR REPLACE FUNCTION queue_give_back(p_id uuid, p_claim_token uuid)
RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    n integer;
BEGIN
    UPDATE extraction_queue q
       SET status_id = CASE WHEN q.status_id = 2 THEN 1 ELSE 3 END,
           worker_id = CASE WHEN q.status_id = 2 THEN NULL ELSE q.worker_id END,
           ocr_worker_id = CASE WHEN q.status_id = 6 THEN NULL ELSE q.ocr_worker_id END,
           claim_token = NULL,
           lease_expires_at = NULL,
           ocr_lease_expires_at = NULL,
           updated_at = now()
     WHERE q.claim_token = p_claim_token
       AND (p_id IS NULL OR q.id = p_id)
       AND q.status_id IN (2, 6);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- queue_release_claim(claim_token): undo a claim whose answer the client never received (its call
-- timed out or the connection broke while Postgres committed), either stage (2 → 1, 6 → 3).
-- Invariant: afterwards no row is held under p_claim_token and none ever will be. Under the
-- per-token lock (queue_lock_claim_token) the token is recorded as cancelled: a claim that already
-- committed is undone here (no attempt counted, no backoff: claimable at once), a claim still
-- running finishes first and is then undone, and a claim arriving later sees the cancelled token and
-- claims nothing. Idempotent: calling it again changes nothing. Cancelled tokens older than a day
-- are forgotten (a claim request is never that late).
-- Returns how many rows went back to waiting (0 or 1).
CREATE OR REPLACE FUNCTION queue_release_claim(p_claim_token uuid)
RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    n integer;
BEGIN
    PERFORM queue_lock_claim_token(p_claim_token);
    INSERT INTO queue_cancelled_claims (claim_token) VALUES (p_claim_token)
        ON CONFLICT (claim_token) DO NOTHING;
    n := queue_give_back(NULL, p_claim_token);
    DELETE FROM queue_cancelled_claims c WHERE c.cancelled_at < now() - interval '1 day';
    RETURN n;
END
$$;

-- queue_release(id, claim_token): give a row back on shutdown, either stage (2 → 1, 6 → 3).
-- Invariant (fencing): applies only if the caller still holds the row (same claim_token, working
-- status); otherwise returns false. No attempt is counted and no backoff is set (queue_give_back):
-- the row is claimable again at once, by any worker.
CREATE OR REPLACE FUNCTION queue_release(p_id uuid, p_claim_token uuid)
RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF p_id IS NULL THEN
        RETURN false;  -- no row has a NULL id (queue_give_back would read NULL as "any id")
    END IF;
    RETURN queue_give_back(p_id, p_claim_token) > 0;
END
$$;

-- queue_renew_lease(id, claim_token, lease_ms): heartbeat of the worker holding a row, either
-- stage (status 2 extends lease_expires_at, status 6 extends ocr_lease_expires_at).
-- Invariant (fencing): applies only while the caller's claim is the row's current claim (same
-- claim_token, row still in a working status). Returns false once the row was reaped, released
-- or completed: the caller has lost the row and must stop working on it.
CREATE OR REPLACE FUNCTION queue_renew_lease(p_id uuid, p_claim_token uuid, p_lease_ms integer)
RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    UPDATE extraction_queue q
       SET lease_expires_at = CASE WHEN q.status_id = 2
                                   THEN now() + p_lease_ms * interval '1 millisecond'
                                   ELSE q.lease_expires_at END,
           ocr_lease_expires_at = CASE WHEN q.status_id = 6
                                       THEN now() + p_lease_ms * interval '1 millisecond'
                                       ELSE q.ocr_lease_expires_at END
     WHERE q.id = p_id
       AND q.claim_token = p_claim_token
       AND q.status_id IN (2, 6);
    RETURN FOUND;
END
$$;
