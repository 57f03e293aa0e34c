//! Several servers on one Redis and one Postgres (docs/design.md §13): two SERVER_IDs, each running the
//! real `registre-workers` and `ocr-pool`, with different budgets and pool sizes. Their capacity
//! budgets and pool allocations stay apart (each within its own usable, each pool its own size),
//! the OCR rate limit is one for both (the stand-in never sees more than the limit in a rolling
//! window although both servers call it), the queue is one (both servers' workers finish its
//! rows), and every status block names its server, as does the operations view behind
//! `registrectl status`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use registre_config::Config;
use registre_testkit::postgres::TestDatabase;
use registre_testkit::{redis_sync, shared_redis_url, unique};
use sqlx::{Connection, PgConnection};

const LIMIT: u64 = 60;
const WINDOW: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_the_queue_and_the_rate_limit_but_not_their_budgets() {
    let redis_url = shared_redis_url();
    let db = TestDatabase::create();
    let mut conn = migrate_with_audit(db.url()).await;
    let work = scratch("fleet");
    let (source_dir, storage, logs) = (work.join("documents"), work.join("storage"), work.join("logs"));
    std::fs::create_dir_all(&logs).unwrap();
    let rows = 180;
    queue_rows(&mut conn, &source_dir, rows).await;
    let (key_a, key_b) = ("fleet-a-key-0123456789", "fleet-b-key-0123456789");
    let gemini = GeminiStandIn::start(&[key_a, key_b]).await;
    let rate = unique("fleet-rate");
    let (a, b) = (unique("fleet-a"), unique("fleet-b"));

    // Server a: the common budget (4.8 vCPU usable), a pool of 3. Server b: 8 vCPU usable,
    // registre workers of 3 vCPU each, a pool of 2: its sum goes above a's usable.
    let env_a = server_env(&a, &redis_url, false, db.url(), &source_dir, &storage, &gemini, key_a, (&rate, LIMIT, WINDOW));
    let mut env_b = server_env(&b, &redis_url, false, db.url(), &source_dir, &storage, &gemini, key_b, (&rate, LIMIT, WINDOW));
    for (k, v) in [("SERVER_MAX_CPU", "10"), ("REGISTRE_WORKER_CPU", "3"), ("OCR_WORKER_POOL_SIZE", "2")] {
        env_b.retain(|(name, _)| name != k);
        env_b.push((k.to_string(), v.to_string()));
    }
    let mut procs = vec![
        Proc::new("a-registre", "registre-workers", env_a.clone(), &logs),
        Proc::new("a-ocr", "ocr-pool", env_a.clone(), &logs),
        Proc::new("b-registre", "registre-workers", env_b.clone(), &logs),
        Proc::new("b-ocr", "ocr-pool", env_b.clone(), &logs),
    ];
    for p in &mut procs {
        p.start();
    }

    let mut c = redis_sync(&redis_url);
    let (mut worst_a, mut worst_b) = (0i64, 0i64);
    let mut samples = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        // Capacity of each server, sampled from outside: within its own usable budget.
        let cpu_a = milli(redis::cmd("GET").arg(format!("server:{{{a}}}:cpu:allocated")).query(&mut c).unwrap());
        let cpu_b = milli(redis::cmd("GET").arg(format!("server:{{{b}}}:cpu:allocated")).query(&mut c).unwrap());
        assert!(cpu_a <= USABLE_CPU_MILLI, "server a allocated {cpu_a} milli-vCPU of {USABLE_CPU_MILLI}");
        assert!(cpu_b <= 8000, "server b allocated {cpu_b} milli-vCPU of 8000");
        (worst_a, worst_b, samples) = (worst_a.max(cpu_a), worst_b.max(cpu_b), samples + 1);
        let counts = count_by_status(&mut conn).await;
        if finished(&counts) == rows as i64 {
            break;
        }
        for p in &mut procs {
            assert!(p.exited().is_none(), "{} exited:\n{}", p.name, tail(&p.output(), 40));
        }
        assert!(Instant::now() < deadline, "rows not finished: {counts:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Pool allocations: one per server, each of its own size.
    for (server, size) in [(&a, 3), (&b, 2)] {
        let json: String = redis::cmd("GET").arg(format!("worker_pool:{{{server}}}:allocation")).query(&mut c).unwrap();
        let alloc: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(alloc["totalWorkers"].as_u64(), Some(size), "{server}: {alloc}");
    }
    // The status blocks name their server and show its own budget.
    procs[1].wait_for_line(&format!("📊 OCR POOL STATUS (server {a})"), Duration::from_secs(30));
    procs[1].wait_for_line(" / 4.8 vCPU", Duration::from_secs(30));
    procs[3].wait_for_line(&format!("📊 OCR POOL STATUS (server {b})"), Duration::from_secs(30));
    procs[3].wait_for_line(" / 8 vCPU", Duration::from_secs(30));
    procs[0].wait_for_line(&format!("📊 REGISTRE WORKERS STATUS (server {a})"), Duration::from_secs(30));
    procs[2].wait_for_line(&format!("📊 REGISTRE WORKERS STATUS (server {b})"), Duration::from_secs(30));

    // The operations view (what `registrectl status` and registre-api print) lists both servers.
    let ops_config = Config::from_vars(env_a.iter().cloned()).unwrap();
    let live = registre_ops::live::Live::from_config(&ops_config).unwrap();
    let view = live.view().await.unwrap();
    for server in [&a, &b] {
        assert!(view.capacity.iter().any(|v| v.server.as_deref() == Some(server.as_str())), "{server} missing from {:?}", view.capacity);
        assert!(view.pools.iter().any(|p| p.server.as_deref() == Some(server.as_str())), "{server}'s pool missing");
    }
    assert_eq!(view.rate_limit.name, rate);

    for p in &mut procs {
        assert!(p.terminate(), "{} did not stop cleanly:\n{}", p.name, tail(&p.output(), 40));
    }
    let mut conn = PgConnection::connect(db.url()).await.unwrap();
    let (done, failed, duplicates) = final_queue_checks(&mut conn, rows).await;

    // The queue is shared: both servers' registre workers (WORKER_ID-less ids carry no server,
    // so the OCR calls' keys tell the servers apart) and both pools did work.
    let by_key = gemini.calls_by_key();
    // Checked over the strict WINDOW: the workers hold each grant for WINDOW + the default 1 s
    // arrival margin (OCR_RATE_LIMIT_MARGIN_MS), which covers calls reaching the stand-in late.
    let busiest = gemini.busiest(WINDOW);
    println!(
        "fleet: {done} done, {failed} failed, {duplicates} duplicate completions; calls by server key {by_key:?}; \
         busiest {:?} window {busiest} (limit {LIMIT}); worst cpu a {worst_a} / {USABLE_CPU_MILLI}, b {worst_b} / 8000 milli ({samples} samples)",
        WINDOW
    );
    assert!(by_key.get(key_a).copied().unwrap_or(0) > 0 && by_key.get(key_b).copied().unwrap_or(0) > 0, "both servers call the API: {by_key:?}");
    assert!(busiest as u64 <= LIMIT, "the two servers together passed the one shared limit: {busiest} > {LIMIT}");
    assert!(worst_b > USABLE_CPU_MILLI, "server b used its own, larger budget (worst {worst_b})");
    assert_eq!(duplicates, 0);
    assert!(gemini.violations().is_empty(), "requests the real API would refuse: {:?}", gemini.violations());
    let _ = std::fs::remove_dir_all(&work);
}
