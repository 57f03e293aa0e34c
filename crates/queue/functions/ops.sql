-- functions/ops.sql: the operators' functions (crates/ops: registrectl, registre-api,
-- registre-monitor): enqueue, retry, cancel, bulk retry, requeue of rows stuck without a lease,
-- and the normalization of older rows' document numbers. Each change is one statement or one
-- function call, never a read-then-write from the client.

-- ops_enqueue(source, number, normalized, circonscription, cadastre, designation, acte_type):
-- queue one document (status 1) for an operator (registre-api POST /api/extractions, registrectl).
-- Identity of a document: its source, circonscription, the normalized number (whitespace removed:
-- "4866594" and "4 866 594" are one document) and, for an index or a plan cadastral, the cadastre
-- and désignation secondaire; for an acte, the acte type. A row whose document_number_normalized
-- is NULL (written by an older system) is matched on its number with whitespace removed, the same
-- expression the identity index 0057 serves.
-- Invariant: a document identical in that sense already waiting or in progress (status 1, 2, 3 or
-- 6) is never queued twice, even by concurrent callers: callers with the same identity serialize
-- on one advisory transaction lock, and each looks up before inserting with a fresh snapshot.
-- Returns the row id and whether it was already there (duplicate). Validation of the fields is the
-- caller's (crates/ops validate.rs, which also computes `normalized`); this function trusts them.
CREATE OR REPLACE FUNCTION ops_enqueue(
    p_source text, p_number text, p_normalized text, p_circonscription text,
    p_cadastre text, p_designation text, p_acte_type text)
RETURNS TABLE (id uuid, duplicate boolean)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    existing uuid;
    is_acte boolean := p_source = 'acte';
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(concat_ws(chr(31), 'ops_enqueue', p_source, p_normalized,
        p_circonscription,
        CASE WHEN is_acte THEN NULL ELSE p_cadastre END,
        CASE WHEN is_acte THEN NULL ELSE p_designation END,
        CASE WHEN is_acte THEN p_acte_type END), 0));
    SELECT q.id INTO existing
      FROM extraction_queue q
     WHERE q.document_source = p_source
       AND coalesce(q.document_number_normalized, regexp_replace(q.document_number, '[[:space:]]', '', 'g')) = p_normalized
       AND q.status_id IN (1, 2, 3, 6)
       AND q.circonscription_fonciere IS NOT DISTINCT FROM p_circonscription
       AND (is_acte OR q.cadastre IS NOT DISTINCT FROM p_cadastre)
       AND (is_acte OR q.designation_secondaire IS NOT DISTINCT FROM p_designation)
       AND (NOT is_acte OR q.acte_type IS NOT DISTINCT FROM p_acte_type)
     ORDER BY q.created_at
     LIMIT 1;
    IF existing IS NOT NULL THEN
        RETURN QUERY SELECT existing, true;
        RETURN;
    END IF;
    RETURN QUERY
    INSERT INTO extraction_queue AS q (document_source, document_number, document_number_normalized,
        circonscription_fonciere, cadastre, designation_secondaire, acte_type, status_id)
    VALUES (p_source, p_number, p_normalized, p_circonscription, p_cadastre, p_designation, p_acte_type, 1)
    RETURNING q.id, false;
END
$$;

-- ops_retry(id): an operator retries a row in Erreur (4).
-- Invariant: only a status-4 row changes, in one statement. It goes back to 3 (OCR only) when its
-- PDF is stored (supabase_path) and only the OCR stage failed (ocr_attempts > 0 or ocr_error set);
-- otherwise back to 1 (fetch again). The retried stage's attempts are reset (both when going back
-- to 1), backoffs, leases, owners, claim token and errors are cleared, so any worker may claim it at
-- once; going back to 1 also resets the browser crash count (queue_release_after_crash), so a retried document gets its
-- full MAX_BROWSER_CRASHES again. Any other status is refused and left as is.
-- Returns (outcome, status_id): outcome 'retried' (status_id = the new status), 'refused'
-- (status_id = the unchanged current status) or 'not_found' (status_id NULL).
CREATE OR REPLACE FUNCTION ops_retry(p_id uuid)
RETURNS TABLE (outcome text, status_id integer)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    new_status integer;
    current_status integer;
BEGIN
    UPDATE extraction_queue q
       SET status_id = CASE
               WHEN q.supabase_path IS NOT NULL
                AND (coalesce(q.ocr_attempts, 0) > 0 OR q.ocr_error IS NOT NULL) THEN 3
               ELSE 1 END,
           attemtps = CASE
               WHEN q.supabase_path IS NOT NULL
                AND (coalesce(q.ocr_attempts, 0) > 0 OR q.ocr_error IS NOT NULL) THEN q.attemtps
               ELSE 0 END,
           ocr_attempts = 0,
           browser_crashes = CASE
               WHEN q.supabase_path IS NOT NULL
                AND (coalesce(q.ocr_attempts, 0) > 0 OR q.ocr_error IS NOT NULL) THEN q.browser_crashes
               ELSE 0 END,
           error_message = NULL,
           ocr_error = NULL,
           worker_id = NULL,
           ocr_worker_id = NULL,
           claim_token = NULL,
           lease_expires_at = NULL,
           ocr_lease_expires_at = NULL,
           next_attempt_at = NULL,
           ocr_next_attempt_at = NULL,
           updated_at = now()
     WHERE q.id = p_id
       AND q.status_id = 4
    RETURNING q.status_id INTO new_status;
    IF FOUND THEN
        RETURN QUERY SELECT 'retried'::text, new_status;
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

-- ops_retry_errors(source, since, limit): an operator retries the rows in Erreur (4), optionally
-- only of one document_source and only those that failed (updated_at) at or after `since`, at most
-- `limit` of them, oldest failure first (registrectl retry --errors [--source S] [--since T] calls
-- it in batches until a batch retries fewer than its limit, so no single transaction holds
-- thousands of row locks or outlives the write's statement_timeout).
-- Invariant: each row goes through ops_retry, so a bulk retry means exactly what one retry
-- means (3 when only OCR failed and the PDF is stored, else 1; attempts reset); rows locked by a
-- running transition are skipped (SKIP LOCKED) rather than waited for, nothing but status-4 rows
-- matching the filters changes, and never more than `limit` rows per call. Returns how many rows
-- were retried.
-- The two-argument version (no limit) of an earlier release is dropped (migration 0101): it could
-- retry a whole table in one transaction.
CREATE OR REPLACE FUNCTION ops_retry_errors(p_source text, p_since timestamptz, p_limit integer)
RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    r record;
    n integer := 0;
    result record;
BEGIN
    FOR r IN
        SELECT q.id
          FROM extraction_queue q
         WHERE q.status_id = 4
           AND (p_source IS NULL OR q.document_source::text = p_source)
           AND (p_since IS NULL OR q.updated_at >= p_since)
         ORDER BY q.updated_at
         LIMIT greatest(p_limit, 1)
           FOR UPDATE SKIP LOCKED
    LOOP
        SELECT * INTO result FROM ops_retry(r.id);
        IF result.outcome = 'retried' THEN
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END
$$;

-- ops_requeue_stuck(older_than_ms, default_max_attempts, by): rows in a working status (2 or 6)
-- WITHOUT a lease, i.e. claimed by an older system that never set one, and untouched for longer than
-- `older_than_ms` (measured from the row's last update, updated_at, not from its claim: a row an
-- older system claimed long ago but still writes to is not stuck), go back to waiting (2 → 1, 6 → 3), the attempt counted and error_message saying
-- who requeued them and why; a row that has used its last attempt goes to Erreur (4) instead
-- (queue_count_attempt, no backoff).
-- (Rows WITH an expired lease are queue_reap_expired's, reap.sql.)
-- Invariant: a row holding a lease is never touched (its worker is alive or the reaper handles
-- it); each stuck row is requeued once (its status changes, so a second pass does not see it);
-- rows locked by a running transition are skipped (SKIP LOCKED), so any number of monitors and
-- registrectl runs may call this at once.
-- Returns (extraction, ocr): how many rows of each stage were requeued.
CREATE OR REPLACE FUNCTION ops_requeue_stuck(p_older_than_ms bigint, p_default_max_attempts integer, p_by text)
RETURNS TABLE (extraction integer, ocr integer)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    n_extraction integer;
    n_ocr integer;
    cutoff timestamptz := now() - make_interval(secs => p_older_than_ms / 1000.0);
BEGIN
    WITH stuck AS (
        SELECT q.id
          FROM extraction_queue q
         WHERE q.status_id = 2
           AND q.lease_expires_at IS NULL
           AND coalesce(q.updated_at, q.processing_started_at, q.created_at) < cutoff
           FOR UPDATE SKIP LOCKED
    ), requeued AS (
        UPDATE extraction_queue q
           SET (attemtps, status_id, error_message) = (
                   SELECT a.attempts, a.status_id,
                          'requeued by ' || p_by || ': in En traitement without a lease (claimed by '
                          || coalesce(q.worker_id, 'an older system') || ') since '
                          || to_char(coalesce(q.updated_at, q.processing_started_at, q.created_at) AT TIME ZONE 'UTC',
                                     'YYYY-MM-DD HH24:MI:SS') || ' UTC (attempt ' || a.attempts || ')'
                     FROM queue_count_attempt(q.attemtps, q.max_attempts, p_default_max_attempts, 1, NULL, NULL) a),
               worker_id = NULL,
               claim_token = NULL,
               updated_at = now()
          FROM stuck
         WHERE q.id = stuck.id
        RETURNING 1
    )
    SELECT count(*) INTO n_extraction FROM requeued;

    WITH stuck AS (
        SELECT q.id
          FROM extraction_queue q
         WHERE q.status_id = 6
           AND q.ocr_lease_expires_at IS NULL
           AND coalesce(q.updated_at, q.ocr_started_at, q.created_at) < cutoff
           FOR UPDATE SKIP LOCKED
    ), requeued AS (
        UPDATE extraction_queue q
           SET (ocr_attempts, status_id, ocr_error, error_message) = (
                   SELECT a.attempts, a.status_id,
                          'requeued by ' || p_by || ': in OCR en traitement without a lease (claimed by '
                          || coalesce(q.ocr_worker_id, 'an older system') || ')',
                          'requeued by ' || p_by || ': in OCR en traitement without a lease (claimed by '
                          || coalesce(q.ocr_worker_id, 'an older system') || ') since '
                          || to_char(coalesce(q.updated_at, q.ocr_started_at, q.created_at) AT TIME ZONE 'UTC',
                                     'YYYY-MM-DD HH24:MI:SS') || ' UTC (OCR attempt ' || a.attempts || ')'
                     FROM queue_count_attempt(q.ocr_attempts, q.ocr_max_attempts, p_default_max_attempts, 3, NULL, NULL) a),
               ocr_last_error_at = now(),
               ocr_worker_id = NULL,
               claim_token = NULL,
               updated_at = now()
          FROM stuck
         WHERE q.id = stuck.id
        RETURNING 1
    )
    SELECT count(*) INTO n_ocr FROM requeued;

    RETURN QUERY SELECT n_extraction, n_ocr;
END
$$;

-- ops_normalize_document_numbers(batch): fills document_number_normalized (the number with its
-- whitespace removed, as crates/ops validate.rs computes it) of at most `batch` rows where it is
-- NULL (rows written by an older system), so ops_enqueue's duplicate check matches them through
-- the plain column. Callable in batches (one short transaction each); migration 0057 runs the same
-- batches inline, since a migration never calls a function of this band (they are applied after it).
-- Invariant: only rows whose document_number_normalized is NULL change, and only that column (no
-- status, no updated_at: normalizing is not a state change); rows locked by a running transition
-- are skipped (SKIP LOCKED), never waited for, so workers are not held up; at most `batch` rows per
-- call. Returns how many rows it normalized (0: none left that it could lock).
CREATE OR REPLACE FUNCTION ops_normalize_document_numbers(p_batch integer)
RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    n integer;
BEGIN
    WITH todo AS (
        SELECT q.id
          FROM extraction_queue q
         WHERE q.document_number_normalized IS NULL
           AND q.document_number IS NOT NULL
         LIMIT greatest(p_batch, 1)
           FOR UPDATE SKIP LOCKED
    )
    UPDATE extraction_queue q
       SET document_number_normalized = regexp_replace(q.document_number, '[[:space:]]', '', 'g')
      FROM todo
     WHERE q.id = todo.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
