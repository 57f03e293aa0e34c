//! REDIS_CLUSTER=true against a real Redis Cluster (testkit: 3 masters + 3 replicas on private
//! ports): the capacity race from 8 processes, the rate limiter under 4 processes × 16 tasks, and
//! the worker binaries on the cluster, rebalancing their OCR pool and going on while the master
//! holding their server's slot is SIGKILLed and its replica takes over — no capacity
//! over-allocated at any sample, no job lost.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use registre_capacity::{Allocation, CapacityManager, CapacitySettings, WorkerType};
use registre_config::Config;
use registre_ratelimit::{RateLimitSettings, RateLimiter};
use registre_testkit::cluster::RedisCluster;
use registre_testkit::postgres::TestDatabase;
use registre_testkit::{child, unique};
use sqlx::{Connection, PgConnection};
use tokio_util::sync::CancellationToken;

fn cluster_config(nodes: &str, server: &str, extra: &[(&str, &str)]) -> Config {
    let mut vars = vec![
        ("REDIS_CLUSTER", "true"),
        ("REDIS_URL", nodes),
        ("SERVER_ID", server),
        ("DATABASE_URL", "postgres://localhost/unused"),
    ];
    vars.extend_from_slice(extra);
    Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string()))).expect("valid cluster configuration")
}

/// A synchronous cluster connection for the test's own reads and coordination.
fn cluster_sync(nodes: &str) -> redis::cluster::ClusterConnection {
    redis::cluster::ClusterClient::new(nodes.split(',').collect::<Vec<_>>())
        .and_then(|c| c.get_connection())
        .unwrap_or_else(|e| panic!("cluster {nodes}: {e}"))
}

// ---- capacity race: 64 allocations from 8 processes -----------------------------------------

const PROCESSES: usize = 8;
const ATTEMPTS: usize = 8;
const ROUNDS: u64 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process entry point, run by capacity_race_on_a_cluster_grants_exactly_what_fits"]
async fn child_cluster_allocator() {
    let nodes = std::env::var("CHILD_NODES").unwrap();
    let ns = std::env::var("CHILD_SERVER_ID").unwrap();
    let config = cluster_config(&nodes, &ns, &[]);
    let conn = registre_runtime::redis_connection(&config.redis_url).unwrap();
    assert!(conn.is_cluster());
    let m = CapacityManager::new(conn.clone(), CapacitySettings::from_config(&config));
    let mut c = conn;
    // Coordination keys share the server's hash tag, so they live on the same master.
    let _: () = redis::cmd("RPUSH").arg(format!("race:{{{ns}}}:ready")).arg(std::process::id()).query_async(&mut c).await.unwrap();
    for round in 1..=ROUNDS {
        loop {
            let go: Option<u64> = redis::cmd("GET").arg(format!("race:{{{ns}}}:round")).query_async(&mut c).await.unwrap();
            if go == Some(round) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let tasks: Vec<_> = (0..ATTEMPTS)
            .map(|i| {
                let m = m.clone();
                let id = format!("p{}-r{round}-t{i}", std::process::id());
                tokio::spawn(async move { m.allocate(&id, WorkerType::IndexOcr).await.unwrap() })
            })
            .collect();
        let mut won = 0u64;
        for t in tasks {
            if matches!(t.await.unwrap(), Allocation::Granted { .. }) {
                won += 1;
            }
        }
        let _: () = redis::cmd("RPUSH").arg(format!("race:{{{ns}}}:results:{round}")).arg(won).query_async(&mut c).await.unwrap();
    }
}

#[test]
fn capacity_race_on_a_cluster_grants_exactly_what_fits() {
    let cluster = RedisCluster::start();
    let nodes = cluster.urls();
    let ns = unique("race");
    let mut c = cluster_sync(&nodes);
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| child::spawn_test_entry("child_cluster_allocator", &[("CHILD_NODES", nodes.clone()), ("CHILD_SERVER_ID", ns.clone())]))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while redis::cmd("LLEN").arg(format!("race:{{{ns}}}:ready")).query::<usize>(&mut c).unwrap() < PROCESSES {
        assert!(Instant::now() < deadline, "the child processes did not all start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let keys = [
        format!("server:{{{ns}}}:cpu:allocated"),
        format!("server:{{{ns}}}:ram:allocated"),
        format!("server:{{{ns}}}:workers"),
        format!("server:{{{ns}}}:leases"),
    ];
    for round in 1..=ROUNDS {
        let _: () = redis::cmd("DEL").arg(&keys).query(&mut c).unwrap();
        let _: () = redis::cmd("SET").arg(format!("race:{{{ns}}}:round")).arg(round).query(&mut c).unwrap();
        let results_key = format!("race:{{{ns}}}:results:{round}");
        let deadline = Instant::now() + Duration::from_secs(120);
        while redis::cmd("LLEN").arg(&results_key).query::<usize>(&mut c).unwrap() < PROCESSES {
            assert!(Instant::now() < deadline, "round {round}: the children did not report in time");
            std::thread::sleep(Duration::from_millis(5));
        }
        let results: Vec<u64> = redis::cmd("LRANGE").arg(&results_key).arg(0).arg(-1).query(&mut c).unwrap();
        let cpu: String = redis::cmd("GET").arg(&keys[0]).query(&mut c).unwrap();
        let workers: usize = redis::cmd("HLEN").arg(&keys[2]).query(&mut c).unwrap();
        // 6.4 usable / 1.5 per index-ocr worker: exactly 4 of the 64 simultaneous attempts fit.
        assert_eq!(results.iter().sum::<u64>(), 4, "round {round}: granted {results:?} of {} attempts", PROCESSES * ATTEMPTS);
        assert_eq!((cpu.as_str(), workers), ("6", 4), "round {round}");
    }
    for mut ch in children {
        assert!(ch.wait().unwrap().success(), "a child process failed");
    }
}

// ---- rate limiter: 4 processes × 16 tasks --------------------------------------------------

const RL_PROCESSES: usize = 4;
const RL_TASKS: usize = 16;
const RL_LIMIT: u64 = 40;
const RL_WINDOW: Duration = Duration::from_secs(2);
const RL_RUN: Duration = Duration::from_secs(7);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process entry point, run by rate_limit_on_a_cluster_holds_under_many_processes"]
async fn child_cluster_limiter() {
    let nodes = std::env::var("CHILD_NODES").unwrap();
    let name = std::env::var("CHILD_LIMITER").unwrap();
    let config = cluster_config(&nodes, "rl", &[]);
    let conn = registre_runtime::redis_connection(&config.redis_url).unwrap();
    let settings = RateLimitSettings { name, requests_per_window: RL_LIMIT, tokens_per_window: 1_000_000, window: RL_WINDOW, arrival_margin: Duration::ZERO };
    let limiter = RateLimiter::new(conn, settings).unwrap();
    let cancel = CancellationToken::new();
    let until = Instant::now() + RL_RUN;
    let tasks: Vec<_> = (0..RL_TASKS)
        .map(|_| {
            let (limiter, cancel) = (limiter.clone(), cancel.clone());
            tokio::spawn(async move {
                let mut grants = Vec::new();
                while Instant::now() < until {
                    if let Ok(Some(r)) = limiter.acquire_wait(100, &cancel).await {
                        grants.push(r.granted_at_ms());
                    }
                }
                grants
            })
        })
        .collect();
    for t in tasks {
        for g in t.await.unwrap() {
            println!("GRANT {g}");
        }
    }
}

#[test]
fn rate_limit_on_a_cluster_holds_under_many_processes() {
    let cluster = RedisCluster::start();
    let nodes = cluster.urls();
    let name = unique("rl");
    let children: Vec<_> = (0..RL_PROCESSES)
        .map(|_| child::spawn_test_entry("child_cluster_limiter", &[("CHILD_NODES", nodes.clone()), ("CHILD_LIMITER", name.clone())]))
        .collect();
    let mut grants: Vec<u64> = Vec::new();
    for ch in children {
        let out = ch.wait_with_output().unwrap();
        assert!(out.status.success(), "a limiter process failed");
        let text = String::from_utf8_lossy(&out.stdout);
        grants.extend(child::lines_with_prefix(&text, "GRANT ").iter().map(|g| g.parse::<u64>().unwrap()));
    }
    grants.sort_unstable();
    // Grant times are the Redis clock of the one master owning the limiter's slot: exact.
    let w = RL_WINDOW.as_millis() as u64;
    let (mut busiest, mut lo) = (0usize, 0usize);
    for hi in 0..grants.len() {
        while grants[hi] - grants[lo] >= w {
            lo += 1;
        }
        busiest = busiest.max(hi - lo + 1);
    }
    println!("{} grants in {RL_RUN:?}, busiest {RL_WINDOW:?} window {busiest} (limit {RL_LIMIT})", grants.len());
    assert!(busiest as u64 <= RL_LIMIT, "{busiest} grants within one rolling window (limit {RL_LIMIT})");
    // The limiter is the bottleneck (64 eager tasks), so it must also let the full limit through.
    assert_eq!(busiest as u64, RL_LIMIT, "the limiter should admit its full limit under this load");
    assert!(grants.len() as u64 >= RL_LIMIT * 2, "too few grants: {}", grants.len());
}

// ---- the binaries on a cluster: a rebalance, then a master killed ---------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_on_a_cluster_rebalance_and_survive_a_master_failover() {
    let mut cluster = RedisCluster::start();
    let nodes = cluster.urls();
    let server = unique("cl");
    let db = TestDatabase::create();
    let mut conn = migrate_with_audit(db.url()).await;
    let work = scratch("cluster-e2e");
    let (source_dir, storage, logs) = (work.join("documents"), work.join("storage"), work.join("logs"));
    std::fs::create_dir_all(&logs).unwrap();
    // 240 rows to fetch, and 60 index rows already waiting for OCR: the pool starts with
    // ⌊3/2⌋ = 1 index and 2 acte workers, and the index-heavy queue must move one of them.
    queue_rows(&mut conn, &source_dir, 240).await;
    queue_ocr_rows(&mut conn, &storage, "index", 60).await;
    let rows = 300;
    let gemini = GeminiStandIn::start(&["cluster-key-0123456789"]).await;
    let rate = unique("cl-rate");
    // 100 calls per 10 s keeps the work going well past the failover (about 440 calls in all).
    let env = server_env(&server, &nodes, true, db.url(), &source_dir, &storage, &gemini, "cluster-key-0123456789", (&rate, 100, Duration::from_secs(10)));
    let mut registre = Proc::new("registre", "registre-workers", env.clone(), &logs);
    let mut pool = Proc::new("ocr", "ocr-pool", env, &logs);
    registre.start();
    pool.start();
    pool.wait_for_line("✅ WORKER POOL STARTED SUCCESSFULLY", Duration::from_secs(120));
    registre.wait_for_line("✅ Started registre-worker-1", Duration::from_secs(120));

    // The capacity sampler reads through its own cluster connection, every 100 ms.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (s, n, id) = (stop.clone(), nodes.clone(), server.clone());
    let sampler = std::thread::spawn(move || {
        let (mut taken, mut worst, mut over) = (0u64, (0i64, 0i64), Vec::new());
        let mut conn: Option<redis::cluster::ClusterConnection> = None;
        while !s.load(std::sync::atomic::Ordering::SeqCst) {
            if conn.is_none() {
                conn = redis::cluster::ClusterClient::new(n.split(',').collect::<Vec<_>>()).and_then(|c| c.get_connection()).ok();
            }
            if let Some(c) = conn.as_mut() {
                let read: redis::RedisResult<(Option<String>, Option<String>)> =
                    redis::cmd("MGET").arg(format!("server:{{{id}}}:cpu:allocated")).arg(format!("server:{{{id}}}:ram:allocated")).query(c);
                match read {
                    Ok((cpu, ram)) => {
                        let (cpu, ram) = (milli(cpu), milli(ram));
                        taken += 1;
                        worst = (worst.0.max(cpu), worst.1.max(ram));
                        if cpu > USABLE_CPU_MILLI || ram > USABLE_RAM_MILLI {
                            over.push((cpu, ram));
                        }
                    }
                    Err(_) => conn = None,
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (taken, worst, over)
    });

    // A rebalance that moves a worker: the allocation and the assignments follow the queue.
    let mut c = cluster_sync(&nodes);
    let assignments_key = format!("worker_pool:{{{server}}}:assignments");
    let mode = |json: &str| serde_json::from_str::<serde_json::Value>(json).ok().and_then(|a| a["assignedMode"].as_str().map(String::from));
    // Each worker's first mode, from the start-up lines (`✅ Started ocr-worker-1 (mode: index)`).
    let started: BTreeMap<String, String> = pool
        .output()
        .lines()
        .filter_map(|l| l.split("✅ Started ").nth(1))
        .filter_map(|l| l.split_once(" (mode: "))
        .map(|(name, m)| (name.to_string(), m.trim_end_matches(')').to_string()))
        .collect();
    // The third may be waiting for capacity (4.8 vCPU: 2 registre + 1.5 index + 1 acte = 4.5).
    assert!(started.len() >= 2, "OCR workers started: {started:?}");
    let first_mode = |worker: &str| started.iter().find(|(name, _)| worker.starts_with(&format!("{name}-"))).map(|(_, m)| m.clone());
    // One watch over the whole run: the splits the pool publishes, whether a worker moved, and,
    // once some rows are done, the master holding this server's slot (capacity and pool keys)
    // SIGKILLed mid-work. The workers must go on: every row finishes, nothing is lost.
    let mut seen_splits = BTreeMap::new();
    let mut moved = false;
    let mut failover: Option<(u16, i64)> = None;
    let deadline = Instant::now() + Duration::from_secs(400);
    loop {
        let json: Option<String> = redis::cmd("GET").arg(format!("worker_pool:{{{server}}}:allocation")).query(&mut c).unwrap_or(None);
        let split = json
            .and_then(|j| serde_json::from_str::<serde_json::Value>(&j).ok())
            .map(|a| (a["indexWorkers"].as_u64().unwrap_or(0), a["acteWorkers"].as_u64().unwrap_or(0)));
        if let Some(split) = split {
            *seen_splits.entry(split).or_insert(0) += 1;
        }
        // The new split is carried out by the workers: as many assigned to index as the split
        // says, by a worker switching mode or by a waiting one starting in the new mode.
        let now: BTreeMap<String, String> = redis::cmd("HGETALL").arg(&assignments_key).query(&mut c).unwrap_or_default();
        let index_assigned = now.values().filter(|a| mode(a).as_deref() == Some("index")).count() as u64;
        let switched = now.iter().any(|(w, a)| first_mode(w).is_some_and(|first| Some(first) != mode(a)));
        moved |= split.is_some_and(|(index, _)| index != 1 && index == index_assigned) || switched;
        let counts = count_by_status(&mut conn).await;
        let done = finished(&counts);
        if done == rows as i64 {
            break;
        }
        if failover.is_none() && done >= 30 {
            let key = format!("server:{{{server}}}:leases");
            let killed = tokio::task::block_in_place(|| cluster.kill_master_of(&key));
            failover = Some((killed, done));
            // The slot map changed: the test's own connection starts afresh too.
            c = cluster_sync(&nodes);
        }
        assert!(registre.exited().is_none() && pool.exited().is_none(), "a worker process died");
        assert!(
            Instant::now() < deadline,
            "rows stuck: {counts:?} (failover {failover:?})\n{}\n{}",
            tail(&registre.output(), 30),
            tail(&pool.output(), 30)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (killed, before) = failover.expect("the work ended before the failover could be tested; queue more rows");
    // The start split is ⌊3/2⌋ = 1 index, 2 acte; the index-heavy queue must have changed it.
    assert!(seen_splits.keys().any(|(index, _)| *index != 1), "the pool never rebalanced on the cluster: splits seen {seen_splits:?}");
    assert!(moved, "the workers never took the new split: first modes {started:?}, splits {seen_splits:?}");

    // The operations view (registrectl status, the dashboard) finds this server on the cluster:
    // its SCAN covers every master, not one random node.
    // Configured as another server, so this one must be found by the scan.
    let live = registre_ops::live::Live::from_config(&cluster_config(&nodes, "ops-view", &[])).unwrap();
    let view = live.view().await.unwrap();
    assert!(view.capacity.iter().any(|v| v.server.as_deref() == Some(server.as_str())), "{server} missing from {:?}", view.capacity);
    assert!(view.pools.iter().any(|p| p.server.as_deref() == Some(server.as_str())), "{server}'s pool missing from the view");
    assert!(registre.terminate(), "registre-workers did not stop cleanly:\n{}", tail(&registre.output(), 40));
    assert!(pool.terminate(), "ocr-pool did not stop cleanly:\n{}", tail(&pool.output(), 40));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (taken, worst, over) = sampler.join().unwrap();

    let mut conn = PgConnection::connect(db.url()).await.unwrap();
    let (done, failed, duplicates) = final_queue_checks(&mut conn, rows).await;
    println!(
        "cluster: killed master :{killed} after {before} rows finished; {done} done, {failed} failed, {duplicates} duplicate completions; \
         capacity samples {taken}, worst {worst:?} of ({USABLE_CPU_MILLI}, {USABLE_RAM_MILLI}) milli; splits seen {seen_splits:?}"
    );
    assert!(taken > 10, "too few capacity samples");
    assert!(over.is_empty(), "allocated capacity above usable: {over:?}");
    assert_eq!(duplicates, 0);

    // /ready on a cluster (METRICS_ADDR): listed first, the killed master answers nothing, yet the
    // cluster serves every slot, so the workers are ready. Once a slot range has lost its master
    // and its replica, they are not, whichever node answers.
    let seeds = format!("redis://127.0.0.1:{killed},{nodes}");
    let target = cluster_config(&seeds, &server, &[]).redis_url;
    assert_eq!(registre_telemetry::redis_ready(&target).await, Ok(()), "a cluster serving every slot is ready");
    let key = format!("server:{{{server}}}:leases");
    let promoted = cluster.master_of(&key);
    cluster.kill_node(promoted);
    let deadline = Instant::now() + Duration::from_secs(60);
    let why = loop {
        match registre_telemetry::redis_ready(&target).await {
            Err(why) => break why,
            Ok(()) => {
                assert!(Instant::now() < deadline, "/ready still ready 60 s after {key}'s slot lost :{killed} and :{promoted}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert!(why.contains("Redis Cluster state is fail"), "{why}");
    let _ = std::fs::remove_dir_all(&work);
}
