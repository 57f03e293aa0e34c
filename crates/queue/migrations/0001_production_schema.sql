-- 0001 production schema: the tables the older system created in every Supabase project.
-- Invariant: applying this file never changes a row that already exists. Every statement is
-- IF NOT EXISTS / ON CONFLICT DO NOTHING, so it creates the tables in an empty database and is a
-- no-op on top of the production schema (columns a production table lacks are added, never altered).

CREATE TABLE IF NOT EXISTS extraction_status (
    id integer PRIMARY KEY,
    name text NOT NULL
);

INSERT INTO extraction_status (id, name) VALUES
    (1, 'En attente'),
    (2, 'En traitement'),
    (3, 'Complété'),
    (4, 'Erreur'),
    (5, 'Extraction complété'),
    (6, 'OCR en traitement')
ON CONFLICT (id) DO NOTHING;

CREATE TABLE IF NOT EXISTS extraction_queue (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    document_source text NOT NULL,
    document_number text NOT NULL,
    document_number_normalized text,
    circonscription_fonciere text,
    cadastre text,
    designation_secondaire text,
    acte_type text,
    status_id integer NOT NULL DEFAULT 1 REFERENCES extraction_status (id),
    worker_id text,
    attemtps integer DEFAULT 0,            -- sic: the production column is misspelled
    max_attempts integer DEFAULT 3,
    supabase_path text,
    error_message text,
    file_content text,
    boosted_file_content text,
    processing_started_at timestamptz,
    ocr_worker_id text,
    ocr_started_at timestamptz,
    ocr_completed_at timestamptz,
    ocr_attempts integer DEFAULT 0,
    ocr_max_attempts integer DEFAULT 3,
    ocr_error text,
    ocr_last_error_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- A production table created before some of these columns existed gets them here.
ALTER TABLE extraction_queue
    ADD COLUMN IF NOT EXISTS document_number_normalized text,
    ADD COLUMN IF NOT EXISTS circonscription_fonciere text,
    ADD COLUMN IF NOT EXISTS cadastre text,
    ADD COLUMN IF NOT EXISTS designation_secondaire text,
    ADD COLUMN IF NOT EXISTS acte_type text,
    ADD COLUMN IF NOT EXISTS worker_id text,
    ADD COLUMN IF NOT EXISTS attemtps integer DEFAULT 0,
    ADD COLUMN IF NOT EXISTS max_attempts integer DEFAULT 3,
    ADD COLUMN IF NOT EXISTS supabase_path text,
    ADD COLUMN IF NOT EXISTS error_message text,
    ADD COLUMN IF NOT EXISTS file_content text,
    ADD COLUMN IF NOT EXISTS boosted_file_content text,
    ADD COLUMN IF NOT EXISTS processing_started_at timestamptz,
    ADD COLUMN IF NOT EXISTS ocr_worker_id text,
    ADD COLUMN IF NOT EXISTS ocr_started_at timestamptz,
    ADD COLUMN IF NOT EXISTS ocr_completed_at timestamptz,
    ADD COLUMN IF NOT EXISTS ocr_attempts integer DEFAULT 0,
    ADD COLUMN IF NOT EXISTS ocr_max_attempts integer DEFAULT 3,
    ADD COLUMN IF NOT EXISTS ocr_error text,
    ADD COLUMN IF NOT EXISTS ocr_last_error_at timestamptz,
    ADD COLUMN IF NOT EXISTS created_at timestamptz DEFAULT now(),
    ADD COLUMN IF NOT EXISTS updated_at timestamptz DEFAULT now();

-- Registry logins: a registre worker borrows one that no other worker is using (docs/design.md §9).
CREATE TABLE IF NOT EXISTS worker_accounts (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    username text NOT NULL UNIQUE,
    password text NOT NULL,
    is_active boolean NOT NULL DEFAULT true,
    last_used timestamptz,
    failure_count integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One row per live worker, for operators' dashboards.
CREATE TABLE IF NOT EXISTS worker_status (
    worker_id text PRIMARY KEY,
    status text NOT NULL DEFAULT 'idle',
    current_job_id uuid,
    account_id uuid,
    last_heartbeat timestamptz NOT NULL DEFAULT now(),
    jobs_completed integer NOT NULL DEFAULT 0,
    jobs_failed integer NOT NULL DEFAULT 0,
    started_at timestamptz NOT NULL DEFAULT now()
);
