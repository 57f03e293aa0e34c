//! Queue throughput: jobs per second through the workers' path on local PostgreSQL with 1, 4 and
//! 16 workers, ours against pgbench (PostgreSQL's own C client) running the same SQL functions on
//! the same table and rows, in the same run.
//! - ours, the workers' path: the registre worker's queue loop as crates/extraction/src/worker.rs
//!   runs it, minus the fetch: `MultiQueue::next_extraction` (a claim round: `queue_claim_extraction`,
//!   with `queue_reap_expired` once per QUEUE_HEARTBEAT_MS, and the LISTEN connection on), then
//!   `MultiQueue::keep_alive` (the job's lease handed to the queue's heartbeat keeper), then `settle(complete_extraction)`
//!   (`queue_complete_extraction`), then the heartbeat dropped; each worker a task of one process
//!   sharing one MultiQueue, on the binaries' runtime (registre_runtime's `run_binary`: tokio
//!   multi-thread with its default worker count, one per core) and their pool size
//!   (QUEUE_PG_POOL_SIZE's default for that many workers, 2 × workers + 2). The LISTEN connection
//!   listens on the extraction channel, as a registre worker process does (it receives the
//!   announcement of every row inserted; completions go to the OCR channel); its CPU is counted in
//!   ours.
//! - pgbench, the same 2 statements: the same two functions, prepared (`-M prepared`), one job per
//!   transaction of the script: the reference (what a plain client does).
//!
//! pgbench gets as many threads as our runtime (capped at the workers) and one connection per
//! worker. Client CPU per job is getrusage of this process (ours) or of the pgbench child, divided
//! by the jobs: what the client itself costs; the rest of the time is the server and the round
//! trips. Each figure (rate, CPU) is the median of its BENCH_REPEAT runs (default 3), ours and
//! pgbench alternating, and which of them goes first alternating from one round to the next;
//! before each run the LISTEN connection has received every announcement made so far, so one
//! run's notifications are not processed during another's.
//!
//! Run: cargo bench --workspace --bench queue   (BENCH_ROWS rows per run, default 9600;
//! BENCH_WORKERS, default "1,4,16")

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use registre_config::{Config, QueueConfig};
use registre_queue::{settle, MultiQueue, Settled, Transition};
use sqlx::postgres::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

#[path = "../tests/common/mod.rs"]
mod common;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Ours,
    Pgbench,
}

/// The statements crates/queue/src/postgres.rs sends, as they are written there: the claim returns
/// the whole claimed row (its 13 columns, which the worker needs), the completion has its 4
/// arguments (the last, fetched_as, NULL as in the bench's own calls).
const CLAIM_THEN_COMPLETE: &str = "\
SELECT * FROM queue_claim_extraction('pgbench', 60000, gen_random_uuid()) \\gset
SELECT queue_complete_extraction(:id, :claim_token, 'index/x.pdf', NULL);
";

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
    // Each run starts with nothing left to write back or to vacuum (autovacuum is off for this
    // table: the VACUUM above does its work), so neither side pays for what the other left.
    sqlx::raw_sql("CHECKPOINT").execute(pool).await.expect("checkpoint");
}

/// Waits (up to 30 s) until the LISTEN connection has received `expected` announcements in all.
async fn announced(queue: &MultiQueue, expected: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while queue.notifications_received() < expected {
        if Instant::now() > deadline {
            eprintln!("warning: {} of {expected} announcements received", queue.notifications_received());
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// CPU seconds (user + system) of this process or of its waited-for children.
fn cpu_seconds(who: libc::c_int) -> f64 {
    // SAFETY: getrusage only writes the struct we hand it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut usage) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_default()
}

struct Run {
    jobs_per_s: f64,
    client_cpu_us_per_job: f64,
    /// Every PostgreSQL process's CPU during the run, per job (see [`server_cpu_seconds`]).
    server_cpu_us_per_job: f64,
}

/// The fields of /proc/<pid>/stat after the command name, so `stat_fields(pid)[n - 3]` is the
/// man page's field n: ppid is 4, utime 14, stime 15, cutime 16, cstime 17.
fn stat_fields(pid: &str) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(stat[stat.rfind(')')? + 2..].split_whitespace().map(str::to_owned).collect())
}

/// Field `n` (man page numbering) of [`stat_fields`], 0 if absent.
fn stat_field(fields: &[String], n: usize) -> f64 {
    fields.get(n - 3).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

/// The /proc/<pid>/stat fields of every process whose parent is the postmaster (live, or exited
/// and not yet reaped).
fn server_children(postmaster: u32) -> impl Iterator<Item = Vec<String>> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())).and_then(stat_fields))
        .filter(move |f| stat_field(f, 4) as u32 == postmaster)
}

/// CPU seconds (user + system) of the local PostgreSQL server: the postmaster, every live child
/// (backends, WAL writer, checkpointer...) and the children it has reaped (pgbench's backends end
/// with their run). Read from /proc: the bench runs on the server's machine.
fn server_cpu_seconds(postmaster: u32) -> f64 {
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let own = stat_fields(&postmaster.to_string())
        .map(|f| stat_field(&f, 14) + stat_field(&f, 15) + stat_field(&f, 16) + stat_field(&f, 17))
        .unwrap_or(0.0);
    let children: f64 = server_children(postmaster).map(|f| stat_field(&f, 14) + stat_field(&f, 15)).sum();
    (own + children) / ticks
}

/// Waits (at most 10 s) until pgbench's backends are gone and reaped: pgbench returns as soon as
/// it has said goodbye, and a backend read between its exit and its reaping is in neither the live
/// children nor the postmaster's reaped total, which once showed a run at 3 % of its server CPU.
async fn reaped(postmaster: u32, before: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while server_children(postmaster).count() > before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `workers` registre worker loops (queue part) until `rows` jobs are completed.
async fn ours(queue: &Arc<MultiQueue>, workers: usize, rows: usize) -> Run {
    let stop = CancellationToken::new();
    let done = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(Notify::new());
    let lease_ttl = queue.config().lease_ttl;
    let cpu = cpu_seconds(libc::RUSAGE_SELF);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (queue, stop, done, finished) = (queue.clone(), stop.clone(), done.clone(), finished.clone());
        tasks.push(tokio::spawn(async move {
            let id = format!("bench-{w}");
            while let Some(job) = queue.next_extraction(&id, &stop).await {
                let heartbeat = queue.keep_alive(&job);
                let settled = settle(&id, "complete", lease_ttl, &stop, || queue.complete_extraction(&job, "index/x.pdf", None)).await;
                assert!(matches!(settled, Settled::Done(Transition::Applied)), "complete: {settled:?}");
                drop(heartbeat);
                if done.fetch_add(1, Ordering::SeqCst) + 1 == rows {
                    finished.notify_one();
                }
            }
        }));
    }
    finished.notified().await;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(libc::RUSAGE_SELF) - cpu;
    stop.cancel();
    for t in tasks {
        t.await.expect("worker");
    }
    assert_eq!(done.load(Ordering::SeqCst), rows, "every row processed once");
    Run { jobs_per_s: rows as f64 / elapsed, client_cpu_us_per_job: cpu * 1e6 / rows as f64, server_cpu_us_per_job: 0.0 }
}

fn pgbench(url: &str, script: &str, workers: usize, threads: usize, rows: usize) -> Run {
    let path = std::env::temp_dir().join(format!("registre-pgbench-{}-{workers}.sql", std::process::id()));
    std::fs::write(&path, script).expect("pgbench script");
    let cpu = cpu_seconds(libc::RUSAGE_CHILDREN);
    let out = Command::new("pgbench")
        .args(["-n", "-M", "prepared", "-c", &workers.to_string(), "-j", &threads.min(workers).to_string()])
        .args(["-t", &(rows / workers).to_string()])
        .arg("-f")
        .arg(&path)
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("cannot run pgbench (it ships with PostgreSQL: apt install postgresql-client): {e}"));
    let cpu = cpu_seconds(libc::RUSAGE_CHILDREN) - cpu;
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&out.stdout);
    let tps: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("pgbench printed no tps: {text}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert!(out.status.success(), "pgbench failed: {text}\n{}", String::from_utf8_lossy(&out.stderr));
    Run { jobs_per_s: tps, client_cpu_us_per_job: cpu * 1e6 / rows as f64, server_cpu_us_per_job: 0.0 }
}

async fn processed(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM extraction_queue WHERE status_id IN (2, 3)").fetch_one(pool).await.expect("count")
}

/// The median of each figure, taken apart (the fastest run is not always the cheapest one).
fn median(runs: Vec<Run>) -> Run {
    let mid = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Run {
        jobs_per_s: mid(runs.iter().map(|r| r.jobs_per_s).collect()),
        client_cpu_us_per_job: mid(runs.iter().map(|r| r.client_cpu_us_per_job).collect()),
        server_cpu_us_per_job: mid(runs.iter().map(|r| r.server_cpu_us_per_job).collect()),
    }
}

fn main() {
    // The runtime every worker binary runs on (registre_runtime::run_binary).
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(bench());
}

async fn bench() {
    let rows: usize = std::env::var("BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(9600);
    let repeat: usize = std::env::var("BENCH_REPEAT").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let counts: Vec<usize> = std::env::var("BENCH_WORKERS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 4, 16]);
    let threads = tokio::runtime::Handle::current().metrics().num_workers();
    let (db, admin) = common::database(1).await;
    let config = Config::from_vars([("DATABASE_URL", db.url())]).expect("config");
    sqlx::raw_sql("ALTER TABLE extraction_queue SET (autovacuum_enabled = off)").execute(&admin).await.expect("autovacuum off");
    let server: String = sqlx::query_scalar("SHOW server_version").fetch_one(&admin).await.expect("version");
    // The postmaster: the parent of this connection's backend.
    let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&admin).await.expect("backend pid");
    let postmaster = stat_fields(&backend.to_string())
        .map(|f| stat_field(&f, 4) as u32)
        .expect("the bench runs beside the PostgreSQL server it measures (/proc/<backend>/stat)");

    println!(
        "{rows} rows per run, median of {repeat} runs (ours and pgbench alternating, each going first in turn); runtime: tokio multi-thread, {threads} worker threads (the binaries' default); pgbench -j {threads} (at most one per worker); PostgreSQL {server}; load average at start {}",
        load_average()
    );
    println!("client CPU = this process (ours) or the pgbench process, per job; server CPU = every PostgreSQL process, per job");
    println!();
    println!("| workers | pool size | ours, the workers' path: next_extraction, keep_alive, settle(complete_extraction) (jobs/s) | pgbench, same 2 statements (jobs/s) | ratio | client CPU / job: ours | pgbench | ratio | server CPU / job: ours | pgbench |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut every_run = Vec::new();
    for workers in counts {
        let rows = rows / workers * workers;
        let pool_size = QueueConfig::default_pg_pool_size(workers as u32);
        let queue = Arc::new(MultiQueue::connect(&config.environments, &config.queue, pool_size).expect("queue"));
        // Warm up: connections, prepared statements, plans, the LISTEN connection.
        refill(&admin, rows / 10).await;
        ours(&queue, workers, rows / 10).await;
        // Announcements expected so far: the warm-up's rows are not all counted (the LISTEN
        // connection started with the first claim), so start from what arrived once it is quiet.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut expected = queue.notifications_received();
        let (mut mine, mut theirs) = (Vec::new(), Vec::new());
        for round in 0..repeat {
            // Who goes first alternates too (ours, pgbench, pgbench, ours, ...): this machine's
            // commit latency drifts over minutes, and a fixed order would hand that drift to one side.
            let order = if round % 2 == 0 { [Mode::Ours, Mode::Pgbench] } else { [Mode::Pgbench, Mode::Ours] };
            for mode in order {
                refill(&admin, rows).await;
                // Every insert is announced; wait for all of them (and those of the last run).
                expected += rows as u64;
                announced(&queue, expected).await;
                let server = server_cpu_seconds(postmaster);
                let mut run = match mode {
                    Mode::Ours => ours(&queue, workers, rows).await,
                    Mode::Pgbench => {
                        let before = server_children(postmaster).count();
                        let run = pgbench(db.url(), CLAIM_THEN_COMPLETE, workers, threads, rows);
                        reaped(postmaster, before).await;
                        run
                    }
                };
                run.server_cpu_us_per_job = (server_cpu_seconds(postmaster) - server) * 1e6 / rows as f64;
                assert_eq!(processed(&admin).await, rows as i64, "every row claimed once");
                match mode {
                    Mode::Ours => mine.push(run),
                    Mode::Pgbench => theirs.push(run),
                }
            }
        }
        let each = |runs: &[Run]| runs.iter().map(|r| format!("{:.0} ({:.0} µs)", r.jobs_per_s, r.server_cpu_us_per_job)).collect::<Vec<_>>().join(", ");
        every_run.push(format!("| {workers} | {} | {} |", each(&mine), each(&theirs)));
        let (o, p) = (median(mine), median(theirs));
        println!(
            "| {workers} | {pool_size} | {:.0} | {:.0} | {:.2} | {:.0} µs | {:.0} µs | {:.2} | {:.0} µs | {:.0} µs |",
            o.jobs_per_s,
            p.jobs_per_s,
            o.jobs_per_s / p.jobs_per_s,
            o.client_cpu_us_per_job,
            p.client_cpu_us_per_job,
            o.client_cpu_us_per_job / p.client_cpu_us_per_job,
            o.server_cpu_us_per_job,
            p.server_cpu_us_per_job,
        );
    }
    println!();
    println!("| workers | ours, each run in order: jobs/s (server CPU / job) | pgbench, each run in order: jobs/s (server CPU / job) |");
    println!("|---:|---|---|");
    for line in every_run {
        println!("{line}");
    }
    println!();
    println!("load average at end {}", load_average());
    admin.close().await;
}
