//! Latency of GET /api/overview and GET /metrics with 100,000 rows in extraction_queue (real
//! PostgreSQL and Redis, registre-api served in-process, requests over HTTP one at a time). Outside
//! references in the same run: pgbench (PostgreSQL's own benchmark client) running the SQL the
//! overview issues on the same table, once as the overview issues it in steady state (non-final
//! statuses counted, completions of the newest two minutes; status-5 counts and older minutes are
//! kept by registre-ops) and once as every overview ran it before that cache; GET /health (the
//! HTTP floor, no query); /api/overview after dropping the indexes of migration 0050 (what the
//! indexes buy). Prints a markdown table of p50/p95. Target: both routes well under 100 ms.
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

/// The counts (non-final statuses: status 5 is kept by registre-ops' completions cache) and
/// oldest-waiting queries of registre-ops' overview, as it sends them.
const OVERVIEW_SQL: &str = "SELECT status_id, document_source::text, count(*) FROM extraction_queue WHERE status_id IN (1, 2, 3, 4, 6) GROUP BY 1, 2 ORDER BY 1, 2;
SELECT (SELECT extract(epoch FROM now() - min(created_at))::float8 FROM extraction_queue WHERE status_id = 1), (SELECT extract(epoch FROM now() - min(created_at))::float8 FROM extraction_queue WHERE status_id = 3), (SELECT max(updated_at) FROM extraction_queue);";

/// registre-ops' completions query in steady state: only the minutes since the previous call plus
/// one (its $1 is the previous call's minute minus one minute).
const COMPLETIONS_STEADY_SQL: &str = "SELECT c.current, greatest(c.current - interval '1 minute', c.current - interval '59 minutes'), q.minute, q.source, q.count FROM (SELECT date_trunc('minute', now()) AS current) c LEFT JOIN LATERAL (SELECT date_trunc('minute', updated_at) AS minute, document_source::text AS source, count(*) AS count FROM extraction_queue WHERE status_id = 5 AND updated_at >= greatest(c.current - interval '1 minute', c.current - interval '59 minutes') GROUP BY 1, 2) q ON true;";

/// What every overview ran before the completions cache: counts of every status (status 5
/// included) and the whole hour of completions.
const BEFORE_CACHE_SQL: &str = "SELECT status_id, document_source::text, count(*) FROM extraction_queue GROUP BY 1, 2 ORDER BY 1, 2;
SELECT (SELECT extract(epoch FROM now() - min(created_at))::float8 FROM extraction_queue WHERE status_id = 1), (SELECT extract(epoch FROM now() - min(created_at))::float8 FROM extraction_queue WHERE status_id = 3), (SELECT max(updated_at) FROM extraction_queue);
SELECT m.minute, count(q.id) FROM generate_series(date_trunc('minute', now()) - interval '59 minutes', date_trunc('minute', now()), interval '1 minute') AS m(minute) LEFT JOIN extraction_queue q ON q.status_id = 5 AND q.updated_at >= m.minute AND q.updated_at < m.minute + interval '1 minute' GROUP BY m.minute ORDER BY m.minute;";

/// p50 and p95 of `transactions` runs of `script` by pgbench (one client, simple protocol), read
/// from its per-transaction log.
fn pgbench(url: &str, script: &str, transactions: usize) -> (Duration, Duration) {
    let binary = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin/pgbench"))
        .find(|p| p.exists())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "pgbench".to_string());
    let dir = std::env::temp_dir().join(registre_testkit::unique("pgbench"));
    std::fs::create_dir_all(&dir).expect("pgbench dir");
    let file = dir.join("overview.sql");
    std::fs::write(&file, script).expect("pgbench script");
    let out = std::process::Command::new(&binary)
        .args(["-n", "-c", "1", "-t", &transactions.to_string(), "-l", "--log-prefix"])
        .arg(dir.join("log"))
        .arg("-f")
        .arg(&file)
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("{binary} does not run: {e}"));
    assert!(out.status.success(), "pgbench failed: {}", String::from_utf8_lossy(&out.stderr));
    // Log lines: client_id transaction_no latency_us script_no epoch epoch_us.
    let mut times: Vec<Duration> = std::fs::read_dir(&dir)
        .expect("pgbench logs")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("log"))
        .flat_map(|e| std::fs::read_to_string(e.path()).unwrap_or_default().lines().map(str::to_string).collect::<Vec<_>>())
        .filter_map(|line| line.split_whitespace().nth(2).and_then(|us| us.parse::<u64>().ok()))
        .map(Duration::from_micros)
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(times.len(), transactions, "pgbench logged {} of {transactions} transactions", times.len());
    times.sort();
    (times[transactions / 2], times[(transactions * 95 / 100).min(transactions - 1)])
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
    // pgbench last: its numbers with the 0050 indexes back.
    sqlx::raw_sql(
        "CREATE INDEX extraction_queue_status_source_idx ON extraction_queue (status_id, document_source);
         CREATE INDEX extraction_queue_completed_idx ON extraction_queue (updated_at) WHERE status_id = 5;
         CREATE INDEX extraction_queue_updated_idx ON extraction_queue (updated_at)",
    )
    .execute(&pool)
    .await
    .expect("indexes back");
    sqlx::raw_sql("VACUUM ANALYZE extraction_queue").execute(&pool).await.expect("vacuum");
    let steady = pgbench(db.url(), &format!("{OVERVIEW_SQL}\n{COMPLETIONS_STEADY_SQL}"), n);
    let before_cache = pgbench(db.url(), BEFORE_CACHE_SQL, n);
    shutdown.trigger();

    println!("\nregistre-api latency, {rows} rows in extraction_queue, {n} sequential requests each (2-core machine)\n");
    println!("| request | p50 ms | p95 ms |");
    println!("|---|---:|---:|");
    println!("| GET /health (reference: HTTP only, no query) | {} | {} |", ms(health.0), ms(health.1));
    println!("| GET /api/overview | {} | {} |", ms(overview.0), ms(overview.1));
    println!("| GET /metrics | {} | {} |", ms(metrics.0), ms(metrics.1));
    println!("| GET /api/overview without the 0050 indexes (reference) | {} | {} |", ms(unindexed.0), ms(unindexed.1));
    println!("| pgbench: the overview's SQL, steady state (reference: the database alone) | {} | {} |", ms(steady.0), ms(steady.1));
    println!("| pgbench: the SQL every overview ran before the completions cache (all statuses counted, the whole hour read) | {} | {} |", ms(before_cache.0), ms(before_cache.1));
    let ok = overview.1 < Duration::from_millis(100) && metrics.1 < Duration::from_millis(100);
    println!("\ntarget (p95 of /api/overview and /metrics under 100 ms): {}", if ok { "met" } else { "NOT met" });
}
