-- Test-only audit of the fleet tests (tests/tests/common/mod.rs): one record per APPLIED
-- completion, i.e. per UPDATE that moved a row of extraction_queue into status 5 (Extraction
-- complété). Invariant it lets the tests check: a row completed twice (two workers both believing
-- they own it, a retried write applied twice) leaves two records for one row_id.
CREATE TABLE IF NOT EXISTS completion_audit (
    row_id uuid NOT NULL,
    worker_id text,
    ocr_worker_id text,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE OR REPLACE FUNCTION completion_audit_record() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status_id = 5 AND OLD.status_id IS DISTINCT FROM 5 THEN
        INSERT INTO completion_audit (row_id, worker_id, ocr_worker_id) VALUES (NEW.id, NEW.worker_id, NEW.ocr_worker_id);
    END IF;
    RETURN NEW;
END;
$$;

DROP TRIGGER IF EXISTS completion_audit_trigger ON extraction_queue;
CREATE TRIGGER completion_audit_trigger AFTER UPDATE OF status_id ON extraction_queue
    FOR EACH ROW EXECUTE FUNCTION completion_audit_record();
