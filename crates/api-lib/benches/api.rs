//! registre-api under load, with 100,000 rows in extraction_queue (real PostgreSQL and Redis,
//! registre-api served in-process, requests over HTTP).
//!
//! 1. Reads must not starve writes: p50/p95 of a cancel (DELETE /api/extractions/{id}, one waiting
//!    row each) on an idle API, and the same cancel while 50 streams are open (/api/stream, each
//!    reading every event) and 8 pollers ask GET /api/overview: once a second each (a script or a
//!    dashboard: the overview changes once a second), every 100 ms each, and back to back (a stress
//!    row: as fast as the machine answers). Three runs, each alternating idle and loaded parts, so
//!    idle and loaded are measured in the same run and the same minutes; the table gives the median
//!    of the three runs' p50, p95 and p95 ratio. Target: loaded p95 ≤ 2 × idle p95.
//!    As in a deployment, the load comes from other processes: the streams and pollers run in a
//!    child process (this binary again, BENCH_LOAD set), the cancels from a client thread with its
//!    own runtime (as registrectl or a browser would), and registre-api on a 2-worker runtime (the
//!    binary's, on this 2-core machine). Nothing is pinned: all share the 2 cores, PostgreSQL too.
//! 2. Latency of GET /api/overview and GET /metrics (served from the stream's latest overview), and
//!    what computing one overview costs (what every request cost before), with and without the
//!    indexes of migration 0050. Outside references in the same run: pgbench (PostgreSQL's own
//!    benchmark client) running the SQL the overview issues on the same table, once as the overview
//!    issues it in steady state (non-final statuses counted, completions of the newest two
//!    minutes; status-5 counts and older minutes are kept by registre-ops) and once as every
//!    overview ran it before that cache; GET /health (the HTTP floor, no query).
//!
//! Prints markdown tables of p50/p95, with the machine's load average before and after.
//! Run: cargo bench -p registre-api-lib --bench api   (BENCH_ROWS, BENCH_REQUESTS, BENCH_CANCELS
//! (cancels per part, 150) and BENCH_RUNS (3) to change sizes)

use std::sync::Arc;
use std::time::{Duration, Instant};

use registre_config::{Config, EnvName};
use registre_runtime::Shutdown;
use registre_testkit::postgres::TestDatabase;
use registre_testkit::reference::median;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection};

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

const TOKEN: &str = "bench-token-0123456789abcdef";
const STREAMS: usize = 50;
const POLLERS: usize = 8;

fn p50_p95(mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    let n = times.len();
    (times[n / 2], times[(n * 95 / 100).min(n - 1)])
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
    p50_p95(times)
}

/// Cancels each row in `ids` one after the other, from a thread with its own runtime and HTTP
/// client (a separate program's worth: it does not queue behind the API's tasks); the time of each.
async fn cancels(base: &str, ids: Vec<uuid::Uuid>) -> Vec<Duration> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let base = base.to_string();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("client runtime");
        let times = runtime.block_on(async move {
            let client = bench_client();
            // A first request opens the connection: not part of any cancel's time.
            client.get(format!("{base}/health")).send().await.expect("health").bytes().await.expect("body");
            let mut times = Vec::with_capacity(ids.len());
            for id in ids {
                let start = Instant::now();
                let r = client.delete(format!("{base}/api/extractions/{id}?by=bench")).send().await.expect("cancel");
                assert_eq!(r.status(), 200, "cancel {id}");
                r.bytes().await.expect("body");
                times.push(start.elapsed());
            }
            times
        });
        let _ = tx.send(times);
    });
    rx.await.expect("the cancel thread")
}

fn bench_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {TOKEN}").parse().expect("header"));
    reqwest::Client::builder().default_headers(headers).build().expect("client")
}

/// The load generator's process: `BENCH_LOAD=<base URL> <pause ms>` (0: back to back). Opens 50
/// streams reading every event and 8 pollers of /api/overview, prints `ready` once every stream has
/// had its first event, runs until its standard input closes, then prints the polls made and the
/// seconds between `ready` and the end.
fn load_process(spec: &str) {
    let (base, pause) = spec.split_once(' ').expect("BENCH_LOAD=<base> <pause ms>");
    let pause = Duration::from_millis(pause.parse().expect("pause ms"));
    let base = base.to_string();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let client = bench_client();
        let stop = tokio_util::sync::CancellationToken::new();
        let polls = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (opened, mut open) = tokio::sync::mpsc::channel::<()>(STREAMS);
        for _ in 0..STREAMS {
            let (client, url, stop, opened) = (client.clone(), format!("{base}/api/stream"), stop.clone(), opened.clone());
            tokio::spawn(async move {
                let mut r = client.get(url).send().await.expect("stream");
                assert_eq!(r.status(), 200, "stream refused");
                let mut first = true;
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        chunk = r.chunk() => match chunk {
                            Ok(Some(_)) => if std::mem::take(&mut first) { let _ = opened.send(()).await; },
                            _ => return,
                        },
                    }
                }
            });
        }
        for _ in 0..POLLERS {
            let (client, url, stop, polls) = (client.clone(), format!("{base}/api/overview"), stop.clone(), polls.clone());
            tokio::spawn(async move {
                while !stop.is_cancelled() {
                    let r = client.get(&url).send().await.expect("overview");
                    assert_eq!(r.status(), 200, "overview");
                    r.bytes().await.expect("body");
                    polls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                }
            });
        }
        for _ in 0..STREAMS {
            open.recv().await.expect("every stream opens");
        }
        let (from, start) = (polls.load(std::sync::atomic::Ordering::Relaxed), Instant::now());
        println!("ready");
        // Until the parent closes our standard input.
        let _ = tokio::task::spawn_blocking(|| std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new())).await;
        let made = polls.load(std::sync::atomic::Ordering::Relaxed) - from;
        println!("{made} {:.3}", start.elapsed().as_secs_f64());
        stop.cancel();
    });
}

/// The load of one part: the child process, started and ready.
struct Load {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Load {
    async fn start(base: &str, pause: Duration) -> Load {
        use tokio::io::AsyncBufReadExt;
        let exe = std::env::current_exe().expect("this bench's path");
        let mut child = tokio::process::Command::new(exe)
            .env("BENCH_LOAD", format!("{base} {}", pause.as_millis()))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the load process");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let ready = lines.next_line().await.expect("load output");
        assert_eq!(ready.as_deref(), Some("ready"), "the load process did not start");
        Load { child, lines }
    }

    /// Stops the load; polls per second while it ran.
    async fn stop(mut self) -> f64 {
        drop(self.child.stdin.take());
        let line = self.lines.next_line().await.expect("load output").expect("the load's count");
        let _ = self.child.wait().await;
        let mut parts = line.split_whitespace().map(|v| v.parse::<f64>().unwrap_or(0.0));
        let (polls, seconds) = (parts.next().unwrap_or(0.0), parts.next().unwrap_or(1.0));
        polls / seconds.max(1e-9)
    }
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

/// p50/p95 of computing the overview `n` times, as the stream's task does.
async fn compute(ops: &registre_ops::Ops, n: usize) -> (Duration, Duration) {
    let _ = registre_ops::overview(ops).await;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let _ = registre_ops::overview(ops).await;
        times.push(start.elapsed());
    }
    p50_p95(times)
}

fn main() {
    if let Ok(spec) = std::env::var("BENCH_LOAD") {
        return load_process(&spec);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(bench());
}

/// The machine's load average (1, 5, 15 min), from /proc/loadavg.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_else(|_| "?".into())
}

async fn bench() {
    let load_before = load_average();
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
        ("API_TOKEN", TOKEN.to_string()),
        ("PROD_DATABASE_URL", db.url().to_string()),
        ("REDIS_URL", registre_testkit::shared_redis_url()),
        ("SERVER_ID", registre_testkit::unique("bench")),
        ("OCR_RATE_LIMIT_NAME", registre_testkit::unique("bench-rl")),
        // A part's 50 streams may open while the previous part's are still closing.
        ("API_MAX_STREAMS", "128".to_string()),
    ])
    .expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let shutdown = Shutdown::new();
    let (c, s) = (config.clone(), shutdown.clone());
    tokio::spawn(async move { registre_api_lib::serve(&c, listener, s).await.expect("serve") });
    let client = bench_client();

    // 1. A cancel, idle and loaded, in alternating parts of each run.
    let per_part = env_number("BENCH_CANCELS", 150);
    let runs = env_number("BENCH_RUNS", 3).max(1);
    // Pauses between two polls of one poller: a script's or a dashboard's pace, ten times that, and
    // back to back (the stress row).
    let paces = [Duration::from_secs(1), Duration::from_millis(100), Duration::ZERO];
    let parts = 1 + paces.len();
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM extraction_queue WHERE status_id = 1 ORDER BY created_at LIMIT $1")
        .bind((per_part * parts * runs) as i64)
        .fetch_all(&pool)
        .await
        .expect("waiting rows");
    assert_eq!(ids.len(), per_part * parts * runs, "not enough waiting rows");
    // Per run: idle (p50, p95), then per pace (p50, p95, polls/s).
    let mut results: Vec<((Duration, Duration), Vec<(Duration, Duration, f64)>)> = Vec::new();
    for run in ids.chunks(per_part * parts) {
        let mut chunks = run.chunks(per_part);
        let idle = p50_p95(cancels(&base, chunks.next().expect("idle part").to_vec()).await);
        let mut loaded = Vec::new();
        for pace in &paces {
            let load = Load::start(&base, *pace).await;
            let times = cancels(&base, chunks.next().expect("loaded part").to_vec()).await;
            let rate = load.stop().await;
            let (p50, p95) = p50_p95(times);
            loaded.push((p50, p95, rate));
        }
        results.push((idle, loaded));
    }
    let load_after_cancels = load_average();

    // 2. The read routes, then one overview computed directly (each request's cost before).
    let health = measure(&client, &format!("{base}/health"), n).await;
    let overview = measure(&client, &format!("{base}/api/overview"), n).await;
    let metrics = measure(&client, &format!("{base}/metrics"), n).await;
    let ops = registre_ops::Ops::from_config(&config).expect("ops");
    let computed = compute(&ops, n.min(50)).await;
    sqlx::raw_sql(
        "DROP INDEX extraction_queue_status_source_idx, extraction_queue_list_idx, extraction_queue_status_list_idx,
                    extraction_queue_completed_idx, extraction_queue_updated_idx, extraction_queue_identity_idx;
         ANALYZE extraction_queue",
    )
    .execute(&pool)
    .await
    .expect("drop indexes");
    let unindexed = compute(&ops, n.min(20)).await;
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

    let msf = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "\nregistre-api: a cancel while the API is read, {rows} rows in extraction_queue, {per_part} cancels per part, {runs} runs alternating idle and loaded parts (2-core machine shared with other builds; load average before: {load_before}, after the cancels: {load_after_cancels})\n"
    );
    println!("| DELETE /api/extractions/{{id}} (cancel of a waiting row) | polls/s | p50 ms | p95 ms | p95 / idle p95 (median) | per run |");
    println!("|---|---:|---:|---:|---:|---|");
    println!(
        "| idle API (reference, same runs) | 0 | {:.2} | {:.2} | 1.00 | {} |",
        median(results.iter().map(|r| msf(r.0 .0)).collect()),
        median(results.iter().map(|r| msf(r.0 .1)).collect()),
        results.iter().map(|r| format!("{:.1}", msf(r.0 .1))).collect::<Vec<_>>().join(" / ") + " ms"
    );
    let mut verdicts = Vec::new();
    for (k, pace) in paces.iter().enumerate() {
        let ratios: Vec<f64> = results.iter().map(|r| msf(r.1[k].1) / msf(r.0 .1).max(1e-9)).collect();
        let ratio = median(ratios.clone());
        let what = if pace.is_zero() {
            "back to back (stress)".to_string()
        } else if *pace >= Duration::from_secs(1) {
            format!("each every {} s (a script's or a dashboard's pace)", pace.as_secs())
        } else {
            format!("each every {} ms", pace.as_millis())
        };
        println!(
            "| {STREAMS} open streams + {POLLERS} pollers of GET /api/overview, {what} | {:.0} | {:.2} | {:.2} | {ratio:.2} | {} |",
            median(results.iter().map(|r| r.1[k].2).collect()),
            median(results.iter().map(|r| msf(r.1[k].0)).collect()),
            median(results.iter().map(|r| msf(r.1[k].1)).collect()),
            ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(" / ")
        );
        verdicts.push(format!("{what}: {}", if ratio <= 2.0 { "met" } else { "NOT met" }));
    }
    println!("\ntarget (loaded p95 ≤ 2 × idle p95, median of the runs): {}", verdicts.join("; "));

    println!("\nregistre-api read latency, {rows} rows in extraction_queue, {n} sequential requests each (2-core machine)\n");
    println!("| request | p50 ms | p95 ms |");
    println!("|---|---:|---:|");
    println!("| GET /health (reference: HTTP only, no query) | {} | {} |", ms(health.0), ms(health.1));
    println!("| GET /api/overview (the stream's latest overview) | {} | {} |", ms(overview.0), ms(overview.1));
    println!("| GET /metrics (the stream's latest overview) | {} | {} |", ms(metrics.0), ms(metrics.1));
    println!("| one overview computed (what each request cost before; now once a second while someone looks) | {} | {} |", ms(computed.0), ms(computed.1));
    println!("| one overview computed without the 0050 indexes (reference) | {} | {} |", ms(unindexed.0), ms(unindexed.1));
    println!("| pgbench: the overview's SQL, steady state (reference: the database alone) | {} | {} |", ms(steady.0), ms(steady.1));
    println!("| pgbench: the SQL every overview ran before the completions cache (all statuses counted, the whole hour read) | {} | {} |", ms(before_cache.0), ms(before_cache.1));
    let ok = overview.1 < Duration::from_millis(100) && metrics.1 < Duration::from_millis(100);
    println!("\ntarget (p95 of /api/overview and /metrics under 100 ms): {}", if ok { "met" } else { "NOT met" });
}
