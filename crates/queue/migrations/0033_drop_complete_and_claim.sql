-- 0033: the fused complete-and-claim functions (0031, 0032) go: no worker called them (the
-- registre and OCR workers complete, then claim, in two calls), so they were a second path to
-- keep correct for nothing.
-- Invariant: after this file, neither function exists, whether the database had them or not.
DROP FUNCTION IF EXISTS queue_complete_extraction_and_claim(uuid, uuid, text, text, integer, uuid);
DROP FUNCTION IF EXISTS queue_complete_ocr_and_claim(uuid, uuid, text, text, text, text, integer, uuid);
