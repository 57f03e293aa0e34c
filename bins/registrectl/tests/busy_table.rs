//! `registrectl migrate` on a BUSY production table: writers insert and update extraction_queue
//! rows continuously on their own connections while the migration runs, and a long transaction
//! of the old system holds a row lock on the table for a while (what makes a naive ALTER TABLE /
//! CREATE INDEX queue every writer behind it). With lock_timeout + retry and the indexes built
//! CONCURRENTLY outside the transaction, the migration completes, every writer keeps writing, and
//! the writers' worst latency is printed (asserted only against a very generous bound). Also: an
//! INVALID index left by an interrupted concurrent build is dropped and built again.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use registre_testkit::postgres::TestDatabase;
use sqlx::{Connection, PgConnection};

/// The shape the older system left in production (no lease columns, no indexes of ours), with rows;
/// after its status table (registre_testkit::postgres::status_table_sql).
const PRODUCTION_QUEUE: &str = r#"
CREATE TABLE extraction_queue (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    document_source varchar(32) NOT NULL,
    document_number varchar(64) NOT NULL,
    status_id integer NOT NULL DEFAULT 1 REFERENCES extraction_status (id),
    worker_id varchar(128),
    attemtps integer DEFAULT 0,
    created_at timestamp with time zone DEFAULT now(),
    updated_at timestamp with time zone DEFAULT now()
);
CREATE TABLE worker_accounts (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), username text NOT NULL, password text NOT NULL, is_active boolean DEFAULT true);
INSERT INTO extraction_queue (document_source, document_number)
    SELECT (ARRAY['acte', 'index'])[1 + n % 2], 'OLD-' || n FROM generate_series(1, 20000) AS n;
"#;

/// How long the old system's transaction holds its lock while the migration starts.
const LONG_TRANSACTION: Duration = Duration::from_secs(4);

#[test]
fn migrate_during_continuous_writes_never_blocks_the_writers_for_long() {
    let db = TestDatabase::create();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
    rt.block_on(async {
        let mut setup = PgConnection::connect(db.url()).await.unwrap();
        sqlx::raw_sql(&(registre_testkit::postgres::status_table_sql() + PRODUCTION_QUEUE)).execute(&mut setup).await.unwrap();
    });

    // 4 writers: each inserts a row and updates an old one, in a loop, timing every statement.
    let stop = Arc::new(AtomicBool::new(false));
    let worst_us = Arc::new(AtomicU64::new(0));
    let writes = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (url, stop, worst_us, writes) = (db.url().to_string(), stop.clone(), worst_us.clone(), writes.clone());
        writers.push(rt.spawn(async move {
            let mut conn = PgConnection::connect(&url).await.unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let started = Instant::now();
                sqlx::query("INSERT INTO extraction_queue (document_source, document_number) VALUES ('index', $1)")
                    .bind(format!("NEW-{w}-{n}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                sqlx::query("UPDATE extraction_queue SET updated_at = now() WHERE document_number = $1")
                    .bind(format!("OLD-{}", 1 + (n * 7 + w) % 20000))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                worst_us.fetch_max(started.elapsed().as_micros() as u64, Ordering::SeqCst);
                writes.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    // The old system's long transaction: it holds a row lock (and so a lock on the table) for
    // LONG_TRANSACTION, while the migration needs the table's exclusive lock for its ALTER TABLE.
    let long = {
        let url = db.url().to_string();
        rt.spawn(async move {
            let mut conn = PgConnection::connect(&url).await.unwrap();
            let mut tx = conn.begin().await.unwrap();
            sqlx::query("UPDATE extraction_queue SET updated_at = now() WHERE document_number = 'OLD-1'").execute(&mut *tx).await.unwrap();
            tokio::time::sleep(LONG_TRANSACTION).await;
            tx.commit().await.unwrap();
        })
    };
    // Let the writers and the long transaction get going (they need no particular timing: this
    // only makes it likely the migration meets them).
    let warm = Instant::now() + Duration::from_secs(60);
    while writes.load(Ordering::SeqCst) < 50 {
        assert!(Instant::now() < warm, "the writers never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = writes.load(Ordering::SeqCst);

    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_registrectl"))
        .arg("migrate")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PROD_DATABASE_URL", db.url())
        .env("QUEUE_MIGRATE_LOCK_TIMEOUT_MS", "200")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run registrectl");
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    rt.block_on(long).unwrap();
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        rt.block_on(w).unwrap();
    }
    let during = writes.load(Ordering::SeqCst) - before;
    let worst = Duration::from_micros(worst_us.load(Ordering::SeqCst));
    println!(
        "registrectl migrate took {:.2} s with 4 writers and a {} s transaction on extraction_queue; writers did {during} insert+update pairs meanwhile; worst writer latency {:.1} ms (lock_timeout 200 ms)",
        took.as_secs_f64(),
        LONG_TRANSACTION.as_secs(),
        worst.as_secs_f64() * 1000.0
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("applied"), "{stdout}");
    assert!(during > 0, "the writers kept writing during the migration");
    // Very generous: a migration without lock_timeout would hold writers behind its ALTER TABLE
    // for the whole long transaction at least; they must never wait for that plus 30 s.
    assert!(worst < LONG_TRANSACTION + Duration::from_secs(30), "a writer waited {worst:?}");

    rt.block_on(async {
        let mut conn = PgConnection::connect(db.url()).await.unwrap();
        let indexes: Vec<(String, bool)> = sqlx::query_as(
            "SELECT c.relname::text, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
              WHERE i.indrelid = 'extraction_queue'::regclass AND c.relname LIKE 'extraction_queue_%_idx' ORDER BY 1",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        // Every index the migrations build concurrently is there (and valid), whoever added it.
        let expected: usize = registre_queue::MIGRATIONS
            .iter()
            .map(|(_, sql)| sql.matches("CREATE INDEX CONCURRENTLY IF NOT EXISTS extraction_queue_").count())
            .sum();
        assert!(expected >= 5, "the claim, lease and claim-token indexes at least: {expected}");
        assert_eq!(indexes.len(), expected, "{indexes:?}");
        assert!(indexes.iter().all(|(_, valid)| *valid), "{indexes:?}");
    });
}

#[test]
fn an_invalid_index_left_by_an_interrupted_build_is_built_again() {
    let db = TestDatabase::create();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut conn = PgConnection::connect(db.url()).await.unwrap();
        registre_queue::migrate(&mut conn, registre_config_env()).await.unwrap();
        // What an interrupted CREATE INDEX CONCURRENTLY leaves behind: the index exists, INVALID.
        sqlx::raw_sql("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'extraction_queue_claim_extraction_idx'::regclass")
            .execute(&mut conn)
            .await
            .unwrap();
        // Make the file count as changed so the runner applies it again (as after an interrupted run).
        sqlx::query("DELETE FROM registre_schema_migrations WHERE name = '0029_indexes_concurrently'").execute(&mut conn).await.unwrap();
        let report = registre_queue::migrate(&mut conn, registre_config_env()).await.unwrap();
        // The migration, then the function definitions, which a run that applies a migration
        // applies again (crates/queue/src/migrate.rs).
        assert_eq!(report.applied.first(), Some(&"0029_indexes_concurrently"));
        assert!(report.applied[1..].iter().all(|n| n.starts_with("functions/")), "{:?}", report.applied);
        let valid: bool = sqlx::query_scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = 'extraction_queue_claim_extraction_idx'::regclass")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert!(valid, "IF NOT EXISTS alone would have kept the INVALID index");
    });
}

fn registre_config_env() -> registre_config::EnvName {
    registre_config::EnvName::Prod
}
