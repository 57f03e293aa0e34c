//! Pickup latency: how long a new row waits before an idle worker claims it, with LISTEN/NOTIFY
//! (the default) and poll-only (QUEUE_POLL_INTERVAL_MS = 2 s, the fallback) side by side in the
//! same run, on local PostgreSQL, with 1 and 8 idle workers (each worker a task of one process
//! sharing one MultiQueue, as in registre-workers / ocr-pool).
//! - insert → extraction claim: a row inserted in status 1, timed from before the INSERT to the
//!   moment `next_extraction` returns it in a worker;
//! - completion → OCR claim: a row moved 2 → 3 by `complete_extraction` (the registre worker's
//!   completion), timed from before that call to the moment an idle OCR worker's `next_ocr`
//!   returns it.
//! Rows are spaced by a pseudo-random 20-320 ms so their arrival falls anywhere in the poll cycle.
//! "claim attempts / row" counts the claim calls every worker made between the row's insert (or
//! completion) and its claim: 1 means exactly one worker was woken for it.
//! Targets (issue 15): notify p50 <= 50 ms, p99 <= 250 ms, <= 2 claim attempts with 8 idle workers.
//!
//! Run: cargo bench -p registre-queue --bench pickup   (BENCH_PICKUP_ROWS rows per line, default 40)

use std::sync::Arc;
use std::time::{Duration, Instant};

use registre_config::{Config, EnvName};
use registre_queue::{DocumentSource, MultiQueue, PgQueue, Queue, QueueSettings};
use registre_testkit::postgres::TestDatabase;
use sqlx::postgres::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[path = "../tests/common/mod.rs"]
mod common;

#[derive(Clone, Copy, PartialEq)]
enum Pickup {
    /// Insert (status 1) → registre worker's claim.
    Insert,
    /// complete_extraction (2 → 3) → OCR worker's claim.
    Completion,
}

struct Line {
    latencies_ms: Vec<f64>,
    attempts: Vec<u64>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn scenario(db: &TestDatabase, admin: &PgPool, pickup: Pickup, notify: bool, idle: usize, rows: usize) -> Line {
    sqlx::raw_sql("TRUNCATE extraction_queue").execute(admin).await.expect("truncate");
    let config = Config::from_vars([("DATABASE_URL", db.url()), ("QUEUE_POLL_INTERVAL_MS", "2000")]).expect("config");
    let queue = Arc::new(MultiQueue::connect(&config.environments, &config.queue, idle as u32 + 2).expect("queue").with_notify(notify));
    let stop = CancellationToken::new();
    let (tx, mut rx) = mpsc::unbounded_channel::<(Uuid, Instant, u64)>();
    let mut workers = Vec::new();
    for w in 0..idle {
        let (queue, stop, tx) = (queue.clone(), stop.clone(), tx.clone());
        workers.push(tokio::spawn(async move {
            let id = format!("pickup-{w}");
            loop {
                let job = match pickup {
                    Pickup::Insert => queue.next_extraction(&id, &stop).await,
                    Pickup::Completion => queue.next_ocr(&id, DocumentSource::Index, &stop).await,
                };
                let Some(job) = job else { return };
                // Claim calls counted at the claim itself, before this worker makes any more.
                let _ = tx.send((job.id, Instant::now(), queue.claim_calls()));
                let done = match pickup {
                    Pickup::Insert => queue.complete_extraction(&job, "index/x.pdf", None).await,
                    Pickup::Completion => queue.complete_ocr(&job, "texte", "texte").await,
                };
                assert!(done.expect("complete").applied());
            }
        }));
    }
    // The registre side of the completion scenario: claims rows and completes them into status 3.
    let settings = QueueSettings { lease_ttl_ms: 60_000, backoff_base_ms: 1000, backoff_max_ms: 1000, default_max_attempts: 3 };
    let producer = PgQueue::from_pool(EnvName::Prod, admin.clone(), settings);

    let mut line = Line { latencies_ms: Vec::new(), attempts: Vec::new() };
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    // Two warm-up rows (connections, LISTEN, prepared statements) are not counted.
    for n in 0..rows + 2 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(20 + seed % 300)).await;
        let (id, started, calls_before) = match pickup {
            Pickup::Insert => {
                let calls = queue.claim_calls();
                let started = Instant::now();
                let id: Uuid = sqlx::query_scalar(
                    "INSERT INTO extraction_queue (document_source, document_number) VALUES ('index', $1) RETURNING id",
                )
                .bind(format!("P-{n}"))
                .fetch_one(admin)
                .await
                .expect("insert");
                (id, started, calls)
            }
            Pickup::Completion => {
                sqlx::query("INSERT INTO extraction_queue (document_source, document_number) VALUES ('index', $1)")
                    .bind(format!("P-{n}"))
                    .execute(admin)
                    .await
                    .expect("insert");
                let job = producer.claim_extraction("registre", Uuid::new_v4()).await.expect("claim").expect("a row");
                let calls = queue.claim_calls();
                let started = Instant::now();
                assert!(producer.complete_extraction(&job, "index/x.pdf", None).await.expect("complete").applied());
                (job.id, started, calls)
            }
        };
        let (claimed_id, claimed_at, calls_at_claim) =
            tokio::time::timeout(Duration::from_secs(60), rx.recv()).await.expect("a worker claims the row within 60 s").expect("workers alive");
        assert_eq!(claimed_id, id, "one row at a time");
        if n >= 2 {
            line.latencies_ms.push(claimed_at.duration_since(started).as_secs_f64() * 1000.0);
            line.attempts.push(calls_at_claim.saturating_sub(calls_before));
        }
    }
    stop.cancel();
    for w in workers {
        w.await.expect("worker");
    }
    line
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rows: usize = std::env::var("BENCH_PICKUP_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(40);
    let (db, admin) = common::database(2).await;

    println!("{rows} rows per line, one at a time, 20-320 ms apart; QUEUE_POLL_INTERVAL_MS = 2000");
    println!();
    println!("| pickup | wake-up | idle workers | p50 | p95 | p99 | max | claim attempts / row (mean, max) |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for pickup in [Pickup::Insert, Pickup::Completion] {
        for idle in [1usize, 8] {
            for notify in [true, false] {
                let mut line = scenario(&db, &admin, pickup, notify, idle, rows).await;
                line.latencies_ms.sort_by(|a, b| a.total_cmp(b));
                let l = &line.latencies_ms;
                let mean_attempts = line.attempts.iter().sum::<u64>() as f64 / line.attempts.len().max(1) as f64;
                println!(
                    "| {} | {} | {idle} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {mean_attempts:.2}, {} |",
                    match pickup {
                        Pickup::Insert => "insert → extraction claim",
                        Pickup::Completion => "completion (2 → 3) → OCR claim",
                    },
                    if notify { "LISTEN/NOTIFY" } else { "poll only" },
                    percentile(l, 50.0),
                    percentile(l, 95.0),
                    percentile(l, 99.0),
                    percentile(l, 100.0),
                    line.attempts.iter().max().copied().unwrap_or(0),
                );
            }
        }
    }
    admin.close().await;
}
