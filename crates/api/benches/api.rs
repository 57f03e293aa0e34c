//! Latency of GET /api/overview and GET /metrics with 100,000 rows in extraction_queue (real
//! PostgreSQL and Redis, registre-api served in-process, requests over HTTP one at a time). Outside
//! references in the same run: GET /health (the HTTP floor, no query) and /api/overview again after
//! dropping the indexes of migration 0050 (what the indexes buy). Prints a markdown table of p50/p95.
//! Target: both routes well under 100 ms.
//!
//! Run: cargo bench -p registre-api-lib --bench api   (BENCH_ROWS, BENCH_REQUESTS to change sizes)

use std::time::{Duration, Instant};

use registre_config::{Config, EnvName};
use registre_runtime::Shutdown;
use registre_testkit::postgres::TestDatabase;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection};

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn measure(client: &reqwest::Client, url: &str, n: usize) -> (Duration, Duration) {
    for _ in 0..5 {
        let r = client.get(url).send().await.expect("request");
        assert!(r.status().is_success(), "{url}: {}", r.status());
        r.bytes().await.expect("body");
    }
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let r = client.get(url).send().await.expect("request");
        assert!(r.status().is_success(), "{url}: {}", r.status());
        r.bytes().await.expect("body");
        times.push(start.elapsed());
    }
    times.sort();
    (times[n / 2], times[(n * 95 / 100).min(n - 1)])
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rows = env_number("BENCH_ROWS", 100_000);
    let n = env_number("BENCH_REQUESTS", 200);
    let db = TestDatabase::create();
    let mut conn = PgConnection::connect(db.url()).await.expect("connect");
    registre_queue::migrate(&mut conn, EnvName::Prod).await.expect("migrate");
    conn.close().await.expect("close");
    let pool = PgPoolOptions::new().max_connections(2).connect(db.url()).await.expect("pool");
    // A production-like mix: mostly final rows, some waiting, working, failed; three sources; a
    // spread of creation and update times over the last two days (some completed within the hour).
    sqlx::query(
        "INSERT INTO extraction_queue (document_source, document_number, circonscription_fonciere, cadastre, status_id,
                                       error_message, created_at, updated_at)
         SELECT (ARRAY['index','acte','plan_cadastraux'])[1 + n % 3], 'B-' || n, 'Montréal', 'Cadastre du Québec',
                CASE WHEN n % 100 < 80 THEN 5 WHEN n % 100 < 88 THEN 1 WHEN n % 100 < 92 THEN 3
                     WHEN n % 100 < 94 THEN 2 WHEN n % 100 < 96 THEN 6 ELSE 4 END,
                CASE WHEN n % 100 >= 96 THEN 'introuvable' END,
                now() - (n % 172800) * interval '1 second', now() - (n % 7200) * interval '1 second'
           FROM generate_series(1, $1) AS n",
    )
    .bind(rows as i32)
    .execute(&pool)
    .await
    .expect("insert rows");
    sqlx::raw_sql("VACUUM ANALYZE extraction_queue").execute(&pool).await.expect("vacuum");

    let config = Config::from_vars([
        ("PROD_DATABASE_URL", db.url().to_string()),
        ("REDIS_URL", registre_testkit::shared_redis_url()),
        ("SERVER_ID", registre_testkit::unique("bench")),
        ("OCR_RATE_LIMIT_NAME", registre_testkit::unique("bench-rl")),
    ])
    .expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let shutdown = Shutdown::new();
    let (c, s) = (config.clone(), shutdown.clone());
    tokio::spawn(async move { registre_api_lib::serve(&c, listener, s).await.expect("serve") });
    let client = reqwest::Client::new();

    let health = measure(&client, &format!("{base}/health"), n).await;
    let overview = measure(&client, &format!("{base}/api/overview"), n).await;
    let metrics = measure(&client, &format!("{base}/metrics"), n).await;
    sqlx::raw_sql(
        "DROP INDEX extraction_queue_status_source_idx, extraction_queue_list_idx, extraction_queue_status_list_idx,
                    extraction_queue_completed_idx, extraction_queue_updated_idx, extraction_queue_identity_idx;
         ANALYZE extraction_queue",
    )
    .execute(&pool)
    .await
    .expect("drop indexes");
    let unindexed = measure(&client, &format!("{base}/api/overview"), n.min(50)).await;
    shutdown.trigger();

    println!("\nregistre-api latency, {rows} rows in extraction_queue, {n} sequential requests each (2-core machine)\n");
    println!("| request | p50 ms | p95 ms |");
    println!("|---|---:|---:|");
    println!("| GET /health (reference: HTTP only, no query) | {} | {} |", ms(health.0), ms(health.1));
    println!("| GET /api/overview | {} | {} |", ms(overview.0), ms(overview.1));
    println!("| GET /metrics | {} | {} |", ms(metrics.0), ms(metrics.1));
    println!("| GET /api/overview without the 0050 indexes (reference) | {} | {} |", ms(unindexed.0), ms(unindexed.1));
    let ok = overview.1 < Duration::from_millis(100) && metrics.1 < Duration::from_millis(100);
    println!("\ntarget (p95 of /api/overview and /metrics under 100 ms): {}", if ok { "met" } else { "NOT met" });
}
