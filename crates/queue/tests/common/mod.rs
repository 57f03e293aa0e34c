//! Shared by the queue's integration tests and benchmarks: a fresh migrated database per test (or
//! benchmark) and row helpers.
#![allow(dead_code)]

use registre_config::EnvName;
use registre_queue::{migrate, PgQueue, QueueSettings};
use registre_testkit::postgres::TestDatabase;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

pub const SETTINGS: QueueSettings =
    QueueSettings { lease_ttl_ms: 30_000, backoff_base_ms: 100, backoff_max_ms: 150, default_max_attempts: 3 };

pub async fn pool(db: &TestDatabase, max: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max)
        .connect(db.url())
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", db.name))
}

pub async fn migrated(db: &TestDatabase) {
    let mut conn = PgConnection::connect(db.url()).await.expect("connect");
    migrate(&mut conn, EnvName::Prod).await.expect("migrate");
    conn.close().await.expect("close");
}

/// A fresh migrated database and a pool of `max_connections` on it.
pub async fn database(max_connections: u32) -> (TestDatabase, PgPool) {
    let db = TestDatabase::create();
    migrated(&db).await;
    let pool = pool(&db, max_connections).await;
    (db, pool)
}

/// A fresh migrated database and a Postgres queue on it.
pub async fn queue(settings: QueueSettings, max_connections: u32) -> (TestDatabase, PgQueue) {
    let (db, pool) = database(max_connections).await;
    (db, PgQueue::from_pool(EnvName::Prod, pool, settings))
}

/// Inserts a waiting row (status 1) and returns its id; rows are ordered by insertion.
pub async fn insert(pool: &PgPool, source: &str, number: &str) -> Uuid {
    registre_testkit::postgres::insert_row(pool, source, number, registre_queue::status::WAITING).await
}

/// `UPDATE extraction_queue SET <set> WHERE id = $1` on one row (a pool or a transaction): puts the
/// row in the state time passing would (lease expired, backoff over), deterministically.
pub async fn update_row<'e>(conn: impl sqlx::PgExecutor<'e>, id: Uuid, set: &str) {
    sqlx::query(&format!("UPDATE extraction_queue SET {set} WHERE id = $1"))
        .bind(id)
        .execute(conn)
        .await
        .expect("update row");
}

/// (status_id, attemtps, ocr_attempts, error_message) of a row.
pub async fn row(pool: &PgPool, id: Uuid) -> (i32, i32, i32, Option<String>) {
    sqlx::query_as("SELECT status_id, coalesce(attemtps, 0), coalesce(ocr_attempts, 0), error_message FROM extraction_queue WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .expect("read row")
}

pub async fn count_status(pool: &PgPool, status: i32) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM extraction_queue WHERE status_id = $1")
        .bind(status)
        .fetch_one(pool)
        .await
        .expect("count")
}

/// Makes the database slow for one claimer: a claim by `worker_id` sleeps `seconds` inside its
/// UPDATE (a trigger), then commits. How a test stands in for a call whose answer comes too late.
pub async fn slow_claims_of(pool: &PgPool, worker_id: &str, seconds: u32) {
    sqlx::raw_sql(&format!(
        "CREATE FUNCTION slow_claim() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.worker_id = '{worker_id}' THEN PERFORM pg_sleep({seconds}); END IF; RETURN NEW; END $$;
         CREATE TRIGGER slow_claim BEFORE UPDATE ON extraction_queue FOR EACH ROW EXECUTE FUNCTION slow_claim();"
    ))
    .execute(pool)
    .await
    .expect("slow claim trigger");
}
