//! The fault-injection suite (issue 13, docs/design.md §13): two servers (SERVER_ID fleet-a, fleet-b),
//! each running the real `registre-workers` and `ocr-pool` release binaries, work through
//! FAULTS_ROWS (default 2,000) rows with the directory fetcher and a Gemini stand-in, on a private
//! persistent Redis and a private PostgreSQL reached through TCP fault proxies, while the test
//! injects, in turn: SIGKILL of a random worker process (started again after 1 s, as PM2 does),
//! Redis connections cut, Redis stalled, PostgreSQL connections cut, PostgreSQL stalled, a Redis
//! restart (SIGKILL, AOF with appendfsync always, as a production Redis), a PostgreSQL restart
//! (immediate stop). Faults go on for FAULTS_SECS (default 75) or until 95 % of the rows are done.
//!
//! Checked from outside, continuously: allocated capacity ≤ usable on each server at every
//! sample (read straight from Redis, not through the proxy); the stand-in's busiest rolling
//! window ≤ the limiter's limit. At the end: every row in 5, or in 4 with a reason; no row
//! completed twice (an audit trigger records every applied completion); no capacity lease left
//! once the processes stopped and the TTL passed. Prints a report table.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rand::seq::IndexedRandom;
use registre_testkit::pg_server::PgServer;
use registre_testkit::proxy::FaultProxy;
use registre_testkit::RedisServer;
use sqlx::{Connection, PgConnection};

const KEY_A: &str = "fleet-key-a-0123456789";
const KEY_B: &str = "fleet-key-b-0123456789";
/// The limiter of both servers: LIMIT requests per rolling WINDOW.
const WINDOW: Duration = Duration::from_secs(10);
const LIMIT: u64 = 400;
// The stand-in's busiest rolling WINDOW is checked strictly against LIMIT: the workers run with
// the default arrival margin (OCR_RATE_LIMIT_MARGIN_MS, 1 s), so each grant is held for WINDOW + 1 s
// and a grant that took more than 500 ms to come back is not used (docs/rate-limiter.md).

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    KillWorker,
    RedisCut,
    RedisStall,
    PgCut,
    PgStall,
    RedisRestart,
    PgRestart,
}

/// One round of faults, every kind at least once; repeated while the run lasts.
const ORDER: [Fault; 8] = [
    Fault::KillWorker,
    Fault::RedisRestart,
    Fault::PgStall,
    Fault::RedisCut,
    Fault::PgRestart,
    Fault::KillWorker,
    Fault::PgCut,
    Fault::RedisStall,
];

/// The capacity sampler's findings, per server: samples taken, worst (cpu, ram) milli-units,
/// samples above usable.
#[derive(Default, Debug, Clone)]
struct Samples {
    taken: u64,
    worst_cpu: i64,
    worst_ram: i64,
    over: Vec<String>,
}

fn sample_capacity(redis_port: u16, servers: Vec<String>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<BTreeMap<String, Samples>> {
    std::thread::spawn(move || {
        let mut found: BTreeMap<String, Samples> = servers.iter().map(|s| (s.clone(), Samples::default())).collect();
        let url = format!("redis://127.0.0.1:{redis_port}");
        let mut conn: Option<redis::Connection> = None;
        while !stop.load(Ordering::SeqCst) {
            if conn.is_none() {
                conn = redis::Client::open(url.as_str()).and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500))).ok();
            }
            if let Some(c) = conn.as_mut() {
                for server in &servers {
                    let read: redis::RedisResult<(Option<String>, Option<String>)> = redis::cmd("MGET")
                        .arg(format!("server:{{{server}}}:cpu:allocated"))
                        .arg(format!("server:{{{server}}}:ram:allocated"))
                        .query(c);
                    match read {
                        Ok((cpu, ram)) => {
                            let (cpu, ram) = (milli(cpu), milli(ram));
                            let s = found.get_mut(server).unwrap();
                            s.taken += 1;
                            s.worst_cpu = s.worst_cpu.max(cpu);
                            s.worst_ram = s.worst_ram.max(ram);
                            if cpu > USABLE_CPU_MILLI || ram > USABLE_RAM_MILLI {
                                s.over.push(format!("cpu {cpu} ram {ram} (milli)"));
                            }
                        }
                        Err(_) => {
                            conn = None;
                            break;
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        found
    })
}

async fn try_finished(url: &str) -> Option<i64> {
    let mut conn = tokio::time::timeout(Duration::from_secs(3), PgConnection::connect(url)).await.ok()?.ok()?;
    let counts: Vec<(i32, i64)> = tokio::time::timeout(
        Duration::from_secs(5),
        sqlx::query_as("SELECT status_id, count(*) FROM extraction_queue GROUP BY status_id").fetch_all(&mut conn),
    )
    .await
    .ok()?
    .ok()?;
    let _ = conn.close().await;
    Some(counts.iter().filter(|(s, _)| *s == 5 || *s == 4).map(|(_, n)| *n).sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_keep_every_promise_under_injected_faults() {
    let rows = env_number("FAULTS_ROWS", 2000) as usize;
    let fault_secs = env_number("FAULTS_SECS", 75);
    let started = Instant::now();

    // Private services (this test restarts them), reached by the workers through fault proxies.
    let mut redis = RedisServer::start_persistent();
    let mut pg = PgServer::start();
    let db_url = pg.create_database("fleet");
    let mut conn = migrate_with_audit(&db_url).await;
    let work = scratch("faults");
    let (source_dir, storage, logs) = (work.join("documents"), work.join("storage"), work.join("logs"));
    std::fs::create_dir_all(&logs).unwrap();
    queue_rows(&mut conn, &source_dir, rows).await;
    let redis_proxy = Arc::new(FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], redis.port))));
    let pg_proxy = Arc::new(FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], pg.port))));
    let gemini = GeminiStandIn::start(&[KEY_A, KEY_B]).await;
    let rate_name = registre_testkit::unique("faults");

    let servers = ["fleet-a", "fleet-b"];
    let mut procs: Vec<Proc> = Vec::new();
    for (server, key) in servers.iter().zip([KEY_A, KEY_B]) {
        let env = server_env(
            server,
            &redis_proxy.url_for(&redis.url()),
            false,
            &pg_proxy.url_for(&db_url),
            &source_dir,
            &storage,
            &gemini,
            key,
            (&rate_name, LIMIT, WINDOW),
        );
        procs.push(Proc::new(&format!("{server}-registre"), "registre-workers", env.clone(), &logs));
        procs.push(Proc::new(&format!("{server}-ocr"), "ocr-pool", env, &logs));
    }
    for p in &mut procs {
        p.start();
    }
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampler = sample_capacity(redis.port, servers.iter().map(|s| s.to_string()).collect(), stop_sampling.clone());

    // The fault loop runs on a blocking thread: restarts and kills are synchronous.
    let finished = Arc::new(AtomicI64::new(0));
    let fin = finished.clone();
    let url = db_url.clone();
    let watcher_stop = Arc::new(AtomicBool::new(false));
    let ws = watcher_stop.clone();
    let watcher = tokio::spawn(async move {
        while !ws.load(Ordering::SeqCst) {
            if let Some(n) = try_finished(&url).await {
                fin.store(n, Ordering::SeqCst);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });

    let report = Arc::new(Mutex::new((BTreeMap::<Fault, u32>::new(), Vec::<(Fault, Duration)>::new())));
    // When each fault was injected, on the stand-in's clock (to read the busiest window against).
    let timeline = Arc::new(Mutex::new(Vec::<(u64, Fault)>::new()));
    let (tl, clock) = (timeline.clone(), gemini.clone());
    let rep = report.clone();
    let fin = finished.clone();
    let (rp, pp) = (redis_proxy.clone(), pg_proxy.clone());
    let (procs, redis, _pg) = tokio::task::spawn_blocking(move || {
        let mut procs = procs;
        let total = rows as i64;
        let fault_until = Instant::now() + Duration::from_secs(fault_secs);
        let all_done_by = Instant::now() + Duration::from_secs(fault_secs + 600);
        let mut next_fault = Instant::now() + Duration::from_secs(3);
        let mut turn = 0usize;
        let mut dead_since: Vec<Option<Instant>> = vec![None; procs.len()];
        // A fault whose recovery is being measured: (kind, ended at, finished rows then).
        let mut recovering: Option<(Fault, Instant, i64)> = None;
        loop {
            let done = fin.load(Ordering::SeqCst);
            if done >= total {
                break;
            }
            assert!(Instant::now() < all_done_by, "not every row finished: {done} of {total}");
            // PM2: a dead process is started again after 1 s (restart_delay).
            for (i, p) in procs.iter_mut().enumerate() {
                if p.exited().is_some() || p.pid().is_none() {
                    let since = *dead_since[i].get_or_insert_with(Instant::now);
                    if since.elapsed() >= Duration::from_secs(1) {
                        p.restart_if_dead();
                        dead_since[i] = None;
                    }
                }
            }
            if let Some((kind, at, before)) = recovering {
                if done > before {
                    lock(&rep).1.push((kind, at.elapsed()));
                    recovering = None;
                }
            }
            let injecting = Instant::now() < fault_until && done < total * 95 / 100;
            if injecting && recovering.is_none() && Instant::now() >= next_fault {
                let kind = ORDER[turn % ORDER.len()];
                lock(&tl).push((clock.elapsed_ms(), kind));
                turn += 1;
                match kind {
                    Fault::KillWorker => {
                        let victim = (0..procs.len()).collect::<Vec<_>>().choose(&mut rand::rng()).copied().unwrap_or(0);
                        procs[victim].kill9();
                    }
                    Fault::RedisCut => {
                        rp.cut();
                    }
                    Fault::RedisStall => {
                        rp.stall();
                        std::thread::sleep(Duration::from_secs(3));
                        rp.resume();
                    }
                    Fault::PgCut => {
                        pp.cut();
                    }
                    Fault::PgStall => {
                        pp.stall();
                        std::thread::sleep(Duration::from_secs(3));
                        pp.resume();
                    }
                    Fault::RedisRestart => redis.restart(),
                    Fault::PgRestart => pg.restart(),
                }
                *lock(&rep).0.entry(kind).or_default() += 1;
                recovering = Some((kind, Instant::now(), fin.load(Ordering::SeqCst)));
                next_fault = Instant::now() + Duration::from_secs(4);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        (procs, redis, pg)
    })
    .await
    .unwrap();
    let work_secs = started.elapsed();

    // Stop like `pm2 stop`: SIGTERM, graceful exit.
    let mut procs = procs;
    for p in &mut procs {
        p.terminate();
    }
    watcher_stop.store(true, Ordering::SeqCst);
    let _ = watcher.await;

    // No capacity lease outlives its TTL (6 s) once every process is gone.
    let mut c = registre_testkit::redis_sync(&redis.url());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query(&mut c).unwrap();
        let now_ms = secs * 1000 + micros / 1000;
        let live: u64 = servers
            .iter()
            .map(|s| redis::cmd("ZCOUNT").arg(format!("server:{{{s}}}:leases")).arg(format!("({now_ms}")).arg("+inf").query::<u64>(&mut c).unwrap())
            .sum();
        if live == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{live} capacity lease(s) still live 60 s after every process stopped");
        std::thread::sleep(Duration::from_millis(200));
    }
    stop_sampling.store(true, Ordering::SeqCst);
    let samples = sampler.join().unwrap();

    let mut conn = PgConnection::connect(&db_url).await.unwrap();
    let (done5, done4, duplicates) = final_queue_checks(&mut conn, rows).await;
    let (busiest, busiest_at) = gemini.busiest_window(WINDOW);
    let (faults, recoveries) = lock(&report).clone();
    let longest = recoveries.iter().max_by_key(|(_, d)| *d).cloned();

    // The report goes to the test's own output and, past the harness's capture, to stderr and a
    // file, so a passing CI run shows it too.
    let mut report_text = String::new();
    macro_rules! report {
        ($($arg:tt)*) => {{
            report_text.push_str(&format!($($arg)*));
            report_text.push('\n');
        }};
    }
    report!("\n== fault-injection report ({rows} rows, 2 servers × (registre-workers + ocr-pool), {:.0} s of work)", work_secs.as_secs_f64());
    report!("| measure | value |\n|---|---|");
    for (kind, n) in &faults {
        report!("| faults: {kind:?} | {n} |");
    }
    report!("| process starts (first + restarts) | {} |", procs.iter().map(|p| p.starts).sum::<u32>());
    report!("| rows done (status 5) | {done5} |");
    report!("| rows failed with a reason (status 4) | {done4} |");
    for (server, s) in &samples {
        report!(
            "| worst capacity sample {server} | {:.1} / {:.1} vCPU, {:.1} / {:.1} GB ({} samples, {} over) |",
            s.worst_cpu as f64 / 1000.0,
            USABLE_CPU_MILLI as f64 / 1000.0,
            s.worst_ram as f64 / 1000.0,
            USABLE_RAM_MILLI as f64 / 1000.0,
            s.taken,
            s.over.len()
        );
    }
    report!("| Gemini calls | {} ({:?}) |", gemini.calls(), gemini.calls_by_key());
    report!("| busiest rolling {} s window (calls reaching the stand-in) | {busiest} (limit {LIMIT}) |", WINDOW.as_secs());
    report!("| duplicate completions | {duplicates} |");
    report!("| fault timeline (s) | {} |", lock(&timeline).iter().map(|(t, k)| format!("{:.1} {k:?}", *t as f64 / 1000.0)).collect::<Vec<_>>().join(", "));
    report!("| busiest window starts at (s) | {:.1} |", busiest_at as f64 / 1000.0);
    match longest {
        Some((kind, d)) => report!("| longest recovery after a fault | {:.1} s ({kind:?}) |", d.as_secs_f64()),
        None => report!("| longest recovery after a fault | none measured |"),
    }

    println!("{report_text}");
    {
        use std::io::Write;
        let _ = std::io::stderr().write_all(report_text.as_bytes());
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fault-report.md");
        if std::fs::write(&path, &report_text).is_ok() {
            let _ = writeln!(std::io::stderr(), "(report written to {})", path.display());
        }
    }

    for p in &procs {
        let out = p.output();
        assert!(!out.contains("panicked"), "{} panicked:\n{}", p.name, tail(&out, 80));
    }
    assert!(gemini.violations().is_empty(), "requests the real API would refuse: {:?}", gemini.violations());
    for (server, s) in &samples {
        assert!(s.taken > 10, "{server}: too few capacity samples ({})", s.taken);
        assert!(s.over.is_empty(), "{server}: allocated capacity above usable: {:?}", s.over);
    }
    assert!(busiest as u64 <= LIMIT, "the stand-in saw {busiest} calls in a rolling {} s window (limit {LIMIT})", WINDOW.as_secs());
    assert_eq!(duplicates, 0, "rows completed twice");
    assert!(faults.values().sum::<u32>() >= 7, "too few faults injected: {faults:?}");
    for kind in [Fault::KillWorker, Fault::RedisCut, Fault::RedisStall, Fault::PgCut, Fault::PgStall, Fault::RedisRestart, Fault::PgRestart] {
        assert!(faults.contains_key(&kind), "{kind:?} was never injected: {faults:?} (raise FAULTS_SECS or FAULTS_ROWS)");
    }
    let _ = std::fs::remove_dir_all(&work);
}
