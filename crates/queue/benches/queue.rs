//! Queue throughput: jobs per second through the workers' path on local PostgreSQL with 1, 4 and
//! 16 workers, ours against pgbench (PostgreSQL's own C client) running the same SQL functions on
//! the same table and rows, in the same run.
//! - ours, the workers' path: `MultiQueue::claim_any_extraction` then `MultiQueue::complete_extraction`
//!   (`queue_claim_extraction`, `queue_complete_extraction`), one round trip each, exactly what the
//!   registre worker (crates/extraction) and the OCR worker (crates/pool, with the OCR pair) run;
//! - pgbench, the same 2 statements: the same two functions, prepared (`-M prepared`), one job per
//!   transaction of the script: the reference (what a plain client does).
//! pgbench gets as many threads as our runtime (2) and one connection per worker, as ours.
//! Client CPU per job is getrusage of this process (ours) or of the pgbench child, divided by the
//! jobs: what the client itself costs; the rest of the time is the server and the round trips.
//! Each figure is the median of BENCH_REPEAT runs (default 3), ours and pgbench alternating.
//!
//! Run: cargo bench -p registre-queue --bench queue   (BENCH_ROWS rows per run, default 3200)

use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use registre_config::Config;
use registre_queue::{MultiQueue, Transition};
use sqlx::postgres::PgPool;

#[path = "../tests/common/mod.rs"]
mod common;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Ours,
    Pgbench,
}

const CLAIM_THEN_COMPLETE: &str = "\
SELECT id AS job_id, claim_token AS job_token FROM queue_claim_extraction('pgbench', 60000, gen_random_uuid()) \\gset
SELECT queue_complete_extraction(:job_id, :job_token, 'index/x.pdf');
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
}

/// CPU seconds (user + system) of this process or of its waited-for children.
fn cpu_seconds(who: libc::c_int) -> f64 {
    // SAFETY: getrusage only writes the struct we hand it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut usage) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

struct Run {
    jobs_per_s: f64,
    client_cpu_us_per_job: f64,
}

async fn ours(queue: &Arc<MultiQueue>, workers: usize, rows: usize) -> Run {
    let cpu = cpu_seconds(libc::RUSAGE_SELF);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            let worker = format!("bench-{w}");
            let mut done = 0usize;
            let mut next = queue.claim_any_extraction(&worker).await;
            while let Some(job) = next {
                assert_eq!(queue.complete_extraction(&job, "index/x.pdf", None).await.expect("complete"), Transition::Applied);
                next = queue.claim_any_extraction(&worker).await;
                done += 1;
            }
            done
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("worker");
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(total, rows, "every row processed once");
    Run { jobs_per_s: rows as f64 / elapsed, client_cpu_us_per_job: (cpu_seconds(libc::RUSAGE_SELF) - cpu) * 1e6 / rows as f64 }
}

fn pgbench(url: &str, script: &str, workers: usize, rows: usize) -> Run {
    let path = std::env::temp_dir().join(format!("registre-pgbench-{}-{workers}.sql", std::process::id()));
    std::fs::write(&path, script).expect("pgbench script");
    let cpu = cpu_seconds(libc::RUSAGE_CHILDREN);
    let out = Command::new("pgbench")
        .args(["-n", "-M", "prepared", "-c", &workers.to_string(), "-j", &workers.min(2).to_string()])
        .args(["-t", &(rows / workers).to_string()])
        .args(["-D", "job_id=00000000-0000-0000-0000-000000000000", "-D", "job_token=00000000-0000-0000-0000-000000000000"])
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
    Run { jobs_per_s: tps, client_cpu_us_per_job: cpu * 1e6 / rows as f64 }
}

async fn processed(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM extraction_queue WHERE status_id IN (2, 3)").fetch_one(pool).await.expect("count")
}

fn median(mut runs: Vec<Run>) -> Run {
    runs.sort_by(|a, b| a.jobs_per_s.total_cmp(&b.jobs_per_s));
    runs.swap_remove(runs.len() / 2)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rows: usize = std::env::var("BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(3200);
    let repeat: usize = std::env::var("BENCH_REPEAT").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let (db, admin) = common::database(1).await;
    let config = Config::from_vars([("DATABASE_URL", db.url())]).expect("config");

    println!("{rows} rows per run, median of {repeat} runs (ours and pgbench alternating); client CPU = this process (ours) or the pgbench process, per job");
    println!();
    println!("| workers | ours, the workers' path: claim then complete (jobs/s) | pgbench, same 2 statements (jobs/s) | ratio | client CPU / job: ours | pgbench | ratio |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for workers in [1usize, 4, 16] {
        let rows = rows / workers * workers;
        let queue = Arc::new(MultiQueue::connect(&config.environments, &config.queue, workers as u32).expect("queue"));
        // Warm up: connections, prepared statements, plans.
        refill(&admin, rows / 10).await;
        ours(&queue, workers, rows / 10).await;
        let (mut mine, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..repeat {
            for mode in [Mode::Ours, Mode::Pgbench] {
                refill(&admin, rows).await;
                let run = match mode {
                    Mode::Ours => ours(&queue, workers, rows).await,
                    Mode::Pgbench => pgbench(db.url(), CLAIM_THEN_COMPLETE, workers, rows),
                };
                assert_eq!(processed(&admin).await, rows as i64, "every row claimed once");
                match mode {
                    Mode::Ours => mine.push(run),
                    Mode::Pgbench => theirs.push(run),
                }
            }
        }
        let (o, p) = (median(mine), median(theirs));
        println!(
            "| {workers} | {:.0} | {:.0} | {:.2} | {:.0} µs | {:.0} µs | {:.2} |",
            o.jobs_per_s,
            p.jobs_per_s,
            o.jobs_per_s / p.jobs_per_s,
            o.client_cpu_us_per_job,
            p.client_cpu_us_per_job,
            o.client_cpu_us_per_job / p.client_cpu_us_per_job,
        );
    }
    admin.close().await;
}
