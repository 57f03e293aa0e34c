-- 0070 index_data: the index des immeubles as structured data (inscriptions, parties, radiations;
-- docs/ocr.md, Structured index), a jsonb column written by the OCR completion of `index` rows
-- (queue_complete_ocr, functions/complete.sql, whose fifth argument it is).
-- Invariant: after this file the column exists, whether the database had it or not; no row changes.
ALTER TABLE extraction_queue ADD COLUMN IF NOT EXISTS index_data jsonb;
