//! Migrations apply to an empty database and on top of the production shape (rows kept and
//! claimable); a second run applies nothing; workers on an unmigrated database get the
//! `registrectl migrate` message.

mod common;

use registre_config::EnvName;
use registre_queue::{migrate, DocumentSource, PgQueue, Queue, MIGRATIONS};
use registre_testkit::postgres::TestDatabase;
use sqlx::{Connection, PgConnection};

#[tokio::test]
async fn empty_database_gets_every_table_status_and_function_once() {
    let db = TestDatabase::create();
    let mut conn = PgConnection::connect(db.url()).await.unwrap();
    let first = migrate(&mut conn, EnvName::Prod).await.unwrap();
    assert_eq!(first.applied.len(), MIGRATIONS.len());
    assert!(first.unchanged.is_empty());
    let second = migrate(&mut conn, EnvName::Prod).await.unwrap();
    assert!(second.applied.is_empty(), "second run must apply nothing: {second:?}");
    assert_eq!(second.unchanged.len(), MIGRATIONS.len());

    let statuses: Vec<(i32, String)> =
        sqlx::query_as("SELECT id, name FROM extraction_status ORDER BY id").fetch_all(&mut conn).await.unwrap();
    let expected = [
        (1, "En attente"),
        (2, "En traitement"),
        (3, "Complété"),
        (4, "Erreur"),
        (5, "Extraction complété"),
        (6, "OCR en traitement"),
    ];
    assert_eq!(statuses, expected.iter().map(|(i, n)| (*i, n.to_string())).collect::<Vec<_>>());

    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns WHERE table_name = 'extraction_queue'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    for c in [
        "id", "document_source", "document_number", "document_number_normalized", "circonscription_fonciere", "cadastre",
        "designation_secondaire", "acte_type", "status_id", "worker_id", "attemtps", "max_attempts", "supabase_path",
        "error_message", "file_content", "boosted_file_content", "processing_started_at", "ocr_worker_id", "ocr_started_at",
        "ocr_completed_at", "ocr_attempts", "ocr_max_attempts", "ocr_error", "ocr_last_error_at", "created_at", "updated_at",
        "claim_token", "lease_expires_at", "ocr_lease_expires_at", "next_attempt_at", "ocr_next_attempt_at",
    ] {
        assert!(columns.iter().any(|x| x == c), "extraction_queue.{c} missing");
    }
    for table in ["worker_accounts", "worker_status", "registre_schema_migrations"] {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(table).fetch_one(&mut conn).await.unwrap();
        assert!(exists, "{table} missing");
    }
    let indexes: Vec<String> = sqlx::query_scalar("SELECT indexdef FROM pg_indexes WHERE tablename = 'extraction_queue'")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert!(indexes.iter().any(|d| d.contains("WHERE (status_id = 1)")), "{indexes:?}");
    assert!(indexes.iter().any(|d| d.contains("WHERE (status_id = 3)")), "{indexes:?}");
    conn.close().await.unwrap();
}

/// The shape the older system left in production: its own column types, no lease columns; after
/// its status table (registre_testkit::postgres::status_table_sql).
const PRODUCTION_QUEUE: &str = r#"
CREATE TABLE extraction_queue (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    document_source varchar(32) NOT NULL CHECK (document_source IN ('acte', 'index', 'plan_cadastraux')),
    document_number varchar(64) NOT NULL,
    document_number_normalized varchar(64),
    circonscription_fonciere varchar(128),
    cadastre varchar(128),
    designation_secondaire varchar(128),
    acte_type varchar(64),
    status_id integer NOT NULL DEFAULT 1 REFERENCES extraction_status (id),
    worker_id varchar(128),
    attemtps integer DEFAULT 0,
    max_attempts integer DEFAULT 3,
    supabase_path text,
    error_message text,
    file_content text,
    boosted_file_content text,
    processing_started_at timestamp with time zone,
    ocr_worker_id text,
    ocr_started_at timestamp with time zone,
    ocr_completed_at timestamp with time zone,
    ocr_attempts integer DEFAULT 0,
    ocr_max_attempts integer DEFAULT 3,
    ocr_error text,
    ocr_last_error_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now(),
    updated_at timestamp with time zone DEFAULT now()
);
CREATE TABLE worker_accounts (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), username text NOT NULL, password text NOT NULL, is_active boolean DEFAULT true);
CREATE TABLE worker_status (worker_id text PRIMARY KEY, status text, last_heartbeat timestamptz);
INSERT INTO worker_accounts (username, password) VALUES ('notaire1', 'secret1');
INSERT INTO extraction_queue (document_source, document_number, status_id, created_at, attemtps) VALUES
    ('index', 'OLD-1', 1, now() - interval '3 days', 0),
    ('acte', 'OLD-2', 1, now() - interval '2 days', 1),
    ('index', 'OLD-3', 3, now() - interval '1 day', 0),
    ('acte', 'OLD-4', 4, now() - interval '1 day', 3);
INSERT INTO extraction_queue (document_source, document_number, status_id, supabase_path, file_content, boosted_file_content, max_attempts)
    VALUES ('index', 'OLD-5', 5, 'index/OLD-5.pdf', 'texte brut', 'texte corrigé', NULL);
"#;

#[tokio::test]
async fn production_shape_keeps_its_rows_and_they_are_claimable() {
    let db = TestDatabase::create();
    let mut conn = PgConnection::connect(db.url()).await.unwrap();
    sqlx::raw_sql(&(registre_testkit::postgres::status_table_sql() + PRODUCTION_QUEUE)).execute(&mut conn).await.unwrap();
    let before: Vec<(String, i32, Option<String>)> = sqlx::query_as(
        "SELECT document_number::text, status_id, file_content FROM extraction_queue ORDER BY document_number",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();

    let report = migrate(&mut conn, EnvName::Prod).await.unwrap();
    assert_eq!(report.applied.len(), MIGRATIONS.len());
    assert!(migrate(&mut conn, EnvName::Prod).await.unwrap().applied.is_empty());

    let after: Vec<(String, i32, Option<String>)> = sqlx::query_as(
        "SELECT document_number::text, status_id, file_content FROM extraction_queue ORDER BY document_number",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(before, after, "rows must survive the migration unchanged");
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM worker_accounts").fetch_one(&mut conn).await.unwrap();
    assert_eq!(accounts, 1);
    let statuses: i64 = sqlx::query_scalar("SELECT count(*) FROM extraction_status").fetch_one(&mut conn).await.unwrap();
    assert_eq!(statuses, 6);
    conn.close().await.unwrap();

    let queue = PgQueue::from_pool(EnvName::Prod, common::pool(&db, 2).await, common::SETTINGS);
    let first = queue.claim_extraction("w-1", uuid::Uuid::new_v4()).await.unwrap().expect("the oldest old row");
    assert_eq!(first.document_number, "OLD-1");
    assert_eq!(first.attempts, 0);
    assert_eq!(first.max_attempts, Some(3));
    let second = queue.claim_extraction("w-1", uuid::Uuid::new_v4()).await.unwrap().expect("the second old row");
    assert_eq!((second.document_number.as_str(), second.attempts), ("OLD-2", 1));
    assert!(queue.claim_extraction("w-1", uuid::Uuid::new_v4()).await.unwrap().is_none());

    let ocr = queue.claim_ocr("ocr-1", DocumentSource::Index, uuid::Uuid::new_v4()).await.unwrap().expect("the old status-3 row");
    assert_eq!(ocr.document_number, "OLD-3");
    assert!(queue.complete_ocr(&ocr, "brut", "corrigé").await.unwrap().applied());
    assert!(queue.complete_extraction(&first, "index/OLD-1.pdf", None).await.unwrap().applied());
    let waiting = queue.count_waiting().await.unwrap();
    assert_eq!(waiting.get("index"), Some(&1), "OLD-1 now waits for OCR: {waiting:?}");
}

#[tokio::test]
async fn unmigrated_database_says_run_registrectl_migrate() {
    let db = TestDatabase::create();
    let queue = PgQueue::from_pool(EnvName::Staging, common::pool(&db, 1).await, common::SETTINGS);
    let err = queue.claim_extraction("w-1", uuid::Uuid::new_v4()).await.unwrap_err();
    assert_eq!(err.to_string(), "extraction_queue missing in staging: run registrectl migrate");
    let err = queue.count_waiting().await.unwrap_err();
    assert_eq!(err.to_string(), "extraction_queue missing in staging: run registrectl migrate");
}
