-- functions/notify.sql: pickup by LISTEN/NOTIFY (crates/queue/src/notify.rs): the trigger function
-- and the two triggers of extraction_queue that call it. The triggers live here, beside their
-- function, because a trigger can only be created once its function exists (this band runs after
-- the migrations). Re-created only when this file changes: DROP + CREATE TRIGGER take a brief
-- SHARE ROW EXCLUSIVE lock on extraction_queue, bounded by the migration lock_timeout.

-- queue_notify_claimable() (trigger): idle workers learn of a claimable row the moment its
-- transaction commits, instead of at their next poll (QUEUE_POLL_INTERVAL_MS, which stays as the fallback). Each process keeps one
-- LISTEN connection per environment (crates/queue/src/notify.rs), on the channels of the stages
-- its workers wait for, and wakes ONE waiting worker per notification, so a new row costs one
-- claim, not one per idle worker.
-- Invariant: every row that becomes claimable now, by an INSERT or by an UPDATE that changes its
-- status to 1 (extraction) or 3 (OCR) without a backoff still running, is announced exactly once
-- on its stage's channel, `registre_queue_extraction` (status 1, what registre workers listen to)
-- or `registre_queue_ocr` (status 3, what the OCR pool listens to), when (and only if) its
-- transaction commits; one channel per stage so that a registre worker process never receives the
-- announcement of every extraction it completes. The payload names the stage, the source for OCR,
-- and the row id (so NOTIFY's de-duplication within one transaction never merges two rows):
-- `1 <id>` or `3 <document_source> <id>`. Each row is also announced, with the same payload, on
-- `registre_queue`, the previous release's single channel, so that release's workers keep their
-- pickup during an upgrade and after a rollback; nothing of this release listens there (see
-- docs/queue.md, Pickup). Rows in backoff are not announced (they become claimable by time, not by
-- a write; polling finds them). Changes no row.
CREATE OR REPLACE FUNCTION queue_notify_claimable()
RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    payload text;
BEGIN
    IF NEW.status_id = 1 THEN
        payload := '1 ' || NEW.id::text;
        PERFORM pg_notify('registre_queue_extraction', payload);
    ELSE
        payload := '3 ' || NEW.document_source::text || ' ' || NEW.id::text;
        PERFORM pg_notify('registre_queue_ocr', payload);
    END IF;
    PERFORM pg_notify('registre_queue', payload);
    RETURN NULL;
END
$$;

-- DROP + CREATE (not CREATE OR REPLACE TRIGGER, PostgreSQL 14+) so this applies to older servers
-- too; both run in this file's transaction, so no write ever sees the table without its trigger.
DROP TRIGGER IF EXISTS extraction_queue_notify_insert ON extraction_queue;
CREATE TRIGGER extraction_queue_notify_insert
    AFTER INSERT ON extraction_queue
    FOR EACH ROW
    WHEN ((NEW.status_id = 1 AND (NEW.next_attempt_at IS NULL OR NEW.next_attempt_at <= now()))
       OR (NEW.status_id = 3 AND (NEW.ocr_next_attempt_at IS NULL OR NEW.ocr_next_attempt_at <= now())))
    EXECUTE FUNCTION queue_notify_claimable();

DROP TRIGGER IF EXISTS extraction_queue_notify_update ON extraction_queue;
CREATE TRIGGER extraction_queue_notify_update
    AFTER UPDATE OF status_id ON extraction_queue
    FOR EACH ROW
    WHEN (OLD.status_id IS DISTINCT FROM NEW.status_id
      AND ((NEW.status_id = 1 AND (NEW.next_attempt_at IS NULL OR NEW.next_attempt_at <= now()))
        OR (NEW.status_id = 3 AND (NEW.ocr_next_attempt_at IS NULL OR NEW.ocr_next_attempt_at <= now()))))
    EXECUTE FUNCTION queue_notify_claimable();
