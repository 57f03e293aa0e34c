-- 0101: the function signatures earlier releases replaced go, by their exact signatures:
--   queue_claim_extraction(text, integer), queue_claim_ocr(text, text, integer)
--     the claims with a server-chosen token (0010, 0011 of the releases before the token claims).
--     They were kept for workers of the previous release during a rolling deploy; that release
--     (and this one) calls only the token versions (text, integer, uuid) / (text, text, integer,
--     uuid), which crates/queue/tests/upgrade.rs checks by migrating a database of the previous
--     release while its calls run;
--   queue_complete_extraction(uuid, uuid, text), queue_complete_ocr(uuid, uuid, text, text),
--   ops_retry_errors(text, timestamptz)
--     replaced by versions with one more argument (earlier releases dropped them in the files that
--     created their successors; kept here so the list of dropped signatures is in one place).
-- Invariant: after this file none of these signatures exists, whether the database had them or
-- not; the signatures that replaced them (functions/) are untouched, and no table or row changes.
DROP FUNCTION IF EXISTS queue_claim_extraction(text, integer);
DROP FUNCTION IF EXISTS queue_claim_ocr(text, text, integer);
DROP FUNCTION IF EXISTS queue_complete_extraction(uuid, uuid, text);
DROP FUNCTION IF EXISTS queue_complete_ocr(uuid, uuid, text, text);
DROP FUNCTION IF EXISTS ops_retry_errors(text, timestamptz);
