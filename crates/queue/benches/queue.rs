//! Jobs per second through claim → complete on local PostgreSQL, with 1, 4 and 16 workers: the
//! queue's SQL functions (what workers run) side by side with a plain SQL baseline
//! (UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED LIMIT 1), then UPDATE to done) on the same
//! table, indexes and row count, in the same run. Prints a markdown table. Target: ≥ 90 % of baseline.
//!
//! Run: cargo bench -p registre-queue --bench queue   (BENCH_ROWS to change the rows per run)

use std::sync::Arc;
use std::time::Instant;

use registre_config::EnvName;
use registre_queue::{migrate, PgQueue, Queue, QueueSettings};
use registre_testkit::postgres::TestDatabase;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

const SETTINGS: QueueSettings =
    QueueSettings { lease_ttl_ms: 60_000, backoff_base_ms: 30_000, backoff_max_ms: 900_000, default_max_attempts: 3 };

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Queue,
    Baseline,
}

async fn refill(pool: &PgPool, rows: usize) {
    sqlx::raw_sql("TRUNCATE extraction_queue").execute(pool).await.expect("truncate");
    sqlx::query(
        "INSERT INTO extraction_queue (document_source, document_number, created_at)
         SELECT 'index', 'B-' || n, now() + n * interval '1 microsecond' FROM generate_series(1, $1) AS n",
    )
    .bind(rows as i32)
    .execute(pool)
    .await
    .expect("insert");
    sqlx::raw_sql("VACUUM ANALYZE extraction_queue").execute(pool).await.expect("vacuum");
}

async fn run(pool: &PgPool, mode: Mode, workers: usize, rows: usize) -> f64 {
    refill(pool, rows).await;
    let queue = Arc::new(PgQueue::from_pool(EnvName::Prod, pool.clone(), SETTINGS));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (queue, pool) = (queue.clone(), pool.clone());
        tasks.push(tokio::spawn(async move {
            let worker = format!("bench-{w}");
            let mut done = 0usize;
            match mode {
                Mode::Queue => {
                    while let Some(job) = queue.claim_extraction(&worker, uuid::Uuid::new_v4()).await.expect("claim") {
                        assert!(queue.complete_extraction(&job, "index/x.pdf").await.expect("complete").applied());
                        done += 1;
                    }
                }
                Mode::Baseline => loop {
                    let id: Option<Uuid> = sqlx::query_scalar(
                        "UPDATE extraction_queue SET status_id = 2, worker_id = $1
                          WHERE id = (SELECT id FROM extraction_queue WHERE status_id = 1
                                       ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
                          RETURNING id",
                    )
                    .bind(&worker)
                    .fetch_optional(&pool)
                    .await
                    .expect("baseline claim");
                    let Some(id) = id else { break };
                    sqlx::query("UPDATE extraction_queue SET status_id = 3, supabase_path = 'index/x.pdf' WHERE id = $1")
                        .bind(id)
                        .execute(&pool)
                        .await
                        .expect("baseline done");
                    done += 1;
                },
            }
            done
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("worker");
    }
    assert_eq!(total, rows, "every row processed once");
    rows as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let rows: usize = std::env::var("BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(3000);
    let db = TestDatabase::create();
    let mut conn = PgConnection::connect(db.url()).await.expect("connect");
    migrate(&mut conn, EnvName::Prod).await.expect("migrate");
    conn.close().await.expect("close");

    println!("| workers | queue functions (jobs/s) | plain SQL baseline (jobs/s) | queue / baseline |");
    println!("|---:|---:|---:|---:|");
    for workers in [1usize, 4, 16] {
        let pool = PgPoolOptions::new().max_connections(workers as u32).connect(db.url()).await.expect("pool");
        // Warm both paths (plans, connections), then alternate runs and keep each one's best of 3.
        run(&pool, Mode::Queue, workers, rows / 10).await;
        run(&pool, Mode::Baseline, workers, rows / 10).await;
        let (mut best_queue, mut best_base) = (0f64, 0f64);
        for _ in 0..3 {
            best_queue = best_queue.max(run(&pool, Mode::Queue, workers, rows).await);
            best_base = best_base.max(run(&pool, Mode::Baseline, workers, rows).await);
        }
        println!("| {workers} | {best_queue:.0} | {best_base:.0} | {:.0} % |", 100.0 * best_queue / best_base);
        pool.close().await;
    }
}
