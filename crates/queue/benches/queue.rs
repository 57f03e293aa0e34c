//! Queue throughput: jobs per second through claim → complete on local PostgreSQL with 1, 4 and 16
//! workers, ours (the MultiQueue every worker uses) against pgbench (PostgreSQL's own C client)
//! running the same SQL functions on the same table and rows, in the same run.
//! - ours, fused: a busy worker hands in its completion and claims its next row in one round trip
//!   (`queue_complete_extraction_and_claim` through `MultiQueue::complete_extraction_and_claim`);
//! - ours, 2 calls: `queue_claim_extraction` then `queue_complete_extraction`, one round trip each;
//! - pgbench, 2 statements: the same two functions, prepared (`-M prepared`), one job per
//!   transaction of the script: the reference (what a plain client does);
//! - pgbench, fused: pgbench calling the fused function, for the client cost alone.
//! pgbench gets as many threads as our runtime (2) and one connection per worker, as ours.
//! Client CPU per job is getrusage of this process (ours) or of the pgbench child, divided by the
//! jobs: what the client itself costs; the rest of the time is the server and the round trips.
//! Each figure is the best of BENCH_REPEAT runs (default 2), the modes alternating.
//!
//! Run: cargo bench -p registre-queue --bench queue   (BENCH_ROWS rows per run, default 3200)

use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use registre_config::{Config, EnvName};
use registre_queue::{migrate, MultiQueue, Transition};
use registre_testkit::postgres::TestDatabase;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    OursFused,
    OursTwoCalls,
    PgbenchTwo,
    PgbenchFused,
}

const CLAIM_THEN_COMPLETE: &str = "\
SELECT id AS job_id, claim_token AS job_token FROM queue_claim_extraction('pgbench', 60000, gen_random_uuid()) \\gset
SELECT queue_complete_extraction(:job_id, :job_token, 'index/x.pdf');
";

/// job_id / job_token start as a row nobody holds (-D): the first completion is refused, the claim
/// goes ahead; every later transaction completes the job the previous one claimed.
const FUSED: &str = "\
SELECT id AS job_id, claim_token AS job_token FROM queue_complete_extraction_and_claim(:job_id, :job_token, 'index/x.pdf', 'pgbench', 60000, gen_random_uuid()) \\gset
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

async fn ours(queue: &Arc<MultiQueue>, fused: bool, workers: usize, rows: usize) -> Run {
    let cpu = cpu_seconds(libc::RUSAGE_SELF);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            let worker = format!("bench-{w}");
            let mut done = 0usize;
            let mut next = queue.claim_extraction(&worker).await;
            while let Some(job) = next {
                if fused {
                    let (completed, claimed) = queue.complete_extraction_and_claim(&job, "index/x.pdf", &worker).await;
                    assert_eq!(completed.expect("complete"), Transition::Applied);
                    next = claimed;
                    // Nothing left in the fused claim: one plain round to be sure (it is the end).
                    if next.is_none() {
                        next = queue.claim_extraction(&worker).await;
                    }
                } else {
                    assert_eq!(queue.complete_extraction(&job, "index/x.pdf").await.expect("complete"), Transition::Applied);
                    next = queue.claim_extraction(&worker).await;
                }
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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rows: usize = std::env::var("BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(3200);
    let repeat: usize = std::env::var("BENCH_REPEAT").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let db = TestDatabase::create();
    let mut conn = PgConnection::connect(db.url()).await.expect("connect");
    migrate(&mut conn, EnvName::Prod).await.expect("migrate");
    conn.close().await.expect("close");
    let admin = PgPoolOptions::new().max_connections(1).connect(db.url()).await.expect("pool");
    let config = Config::from_vars([("DATABASE_URL", db.url())]).expect("config");

    println!("{rows} rows per run, best of {repeat}; client CPU = this process (ours) or the pgbench process, per job");
    println!();
    println!("| workers | ours, fused (jobs/s) | ours, 2 calls | pgbench, 2 statements | pgbench, fused | ours fused / pgbench 2 statements | ours fused / pgbench fused | client CPU / job: ours fused, ours 2 calls, pgbench 2, pgbench fused |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---|");
    for workers in [1usize, 4, 16] {
        let rows = rows / workers * workers;
        let queue = Arc::new(MultiQueue::connect(&config.environments, &config.queue, workers as u32).expect("queue"));
        // Warm up: connections, prepared statements, plans.
        refill(&admin, rows / 10).await;
        ours(&queue, true, workers, rows / 10).await;
        let modes = [Mode::OursFused, Mode::OursTwoCalls, Mode::PgbenchTwo, Mode::PgbenchFused];
        let mut best: Vec<Option<Run>> = modes.iter().map(|_| None).collect();
        for _ in 0..repeat {
            for (i, mode) in modes.iter().enumerate() {
                refill(&admin, rows).await;
                let run = match mode {
                    Mode::OursFused => ours(&queue, true, workers, rows).await,
                    Mode::OursTwoCalls => ours(&queue, false, workers, rows).await,
                    Mode::PgbenchTwo => pgbench(db.url(), CLAIM_THEN_COMPLETE, workers, rows),
                    Mode::PgbenchFused => pgbench(db.url(), FUSED, workers, rows),
                };
                assert_eq!(processed(&admin).await, rows as i64, "every row claimed once");
                if best[i].as_ref().is_none_or(|b| run.jobs_per_s > b.jobs_per_s) {
                    best[i] = Some(run);
                }
            }
        }
        let b: Vec<Run> = best.into_iter().map(|r| r.expect("ran")).collect();
        println!(
            "| {workers} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {:.0} µs, {:.0} µs, {:.0} µs, {:.0} µs |",
            b[0].jobs_per_s,
            b[1].jobs_per_s,
            b[2].jobs_per_s,
            b[3].jobs_per_s,
            b[0].jobs_per_s / b[2].jobs_per_s,
            b[0].jobs_per_s / b[3].jobs_per_s,
            b[0].client_cpu_us_per_job,
            b[1].client_cpu_us_per_job,
            b[2].client_cpu_us_per_job,
            b[3].client_cpu_us_per_job,
        );
    }
    admin.close().await;
}
