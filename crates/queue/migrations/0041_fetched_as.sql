-- 0041 fetched_as: what actually delivered a row's document after the fetcher's fallbacks (the
-- circonscription, cadastre/désignation option or acte type the registry site accepted, e.g.
-- "circonscription_fonciere=Montréal, acte_type=Acte divers"), written by queue_complete_extraction
-- (0013). NULL for rows completed before this column existed and for fetchers without fallbacks.
-- Invariant: after this file the column exists, whether the database had it or not; no row changes.
ALTER TABLE extraction_queue ADD COLUMN IF NOT EXISTS fetched_as text;
