-- 0002 leases and backoff: the columns and indexes this system adds to extraction_queue.
-- Invariant: only adds nullable columns; no existing row or column changes.
--   claim_token          fencing token of the current claim (either stage); every transition after
--                        a claim must present it, so a worker whose row was reaped and claimed
--                        again can never overwrite the new owner's work
--   lease_expires_at     extraction lease (status 2): renewed by heartbeats, reaped once past
--   ocr_lease_expires_at OCR lease (status 6)
--   next_attempt_at      extraction retry not before (backoff after a failure, status 1)
--   ocr_next_attempt_at  OCR retry not before (status 3)

ALTER TABLE extraction_queue
    ADD COLUMN IF NOT EXISTS claim_token uuid,
    ADD COLUMN IF NOT EXISTS lease_expires_at timestamptz,
    ADD COLUMN IF NOT EXISTS ocr_lease_expires_at timestamptz,
    ADD COLUMN IF NOT EXISTS next_attempt_at timestamptz,
    ADD COLUMN IF NOT EXISTS ocr_next_attempt_at timestamptz;

-- Their indexes are built CONCURRENTLY by 0029_indexes_concurrently (outside the transaction),
-- so this file never blocks the writes of a busy table for longer than its brief ALTER TABLE.
