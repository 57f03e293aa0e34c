-- 0020 partial failures: what the queue needs so that no failure loses a row, burns an attempt
-- or loops forever.
-- Invariant: only adds a table and nullable columns; no existing row or column changes.
--   queue_cancelled_claims   claim tokens whose claim the client gave up on (its answer was lost);
--                            a claim presenting a cancelled token claims nothing (0021, 0022, 0023)
--   browser_crashes          times a browser crashed on this row's document (0024); the row ends in
--                            4 (Erreur) after the worker's limit instead of looping forever
--   worker_accounts.lease_*  the registry account lease (0025-0028): held by one worker until it
--                            expires unless renewed, so a crashed holder never keeps an account
-- worker_accounts of the older system may lack failure_count / last_used / updated_at: added here.

CREATE TABLE IF NOT EXISTS queue_cancelled_claims (
    claim_token uuid PRIMARY KEY,
    cancelled_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE extraction_queue
    ADD COLUMN IF NOT EXISTS browser_crashes integer;

ALTER TABLE worker_accounts
    ADD COLUMN IF NOT EXISTS failure_count integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS last_used timestamptz,
    ADD COLUMN IF NOT EXISTS updated_at timestamptz DEFAULT now(),
    ADD COLUMN IF NOT EXISTS lease_holder text,
    ADD COLUMN IF NOT EXISTS lease_expires_at timestamptz;
