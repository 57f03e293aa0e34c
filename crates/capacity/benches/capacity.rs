//! Benchmark: allocate+release cycles per second against a private redis-server, with 1 and 32
//! operations in flight, and Redis round trips per operation measured from the server's own
//! INFO commandstats (top-level commands only: commands run inside a script are not round trips).
//! The outside reference runs in the same process right before each row: redis-benchmark's PING
//! rate on the same server with as many connections as operations in flight; the last column is
//! capacity operations per second / PING per second (target at 32 in flight: >= 75 %).
//! `BENCH_WORKERS` (default 200) other live leases sit in the budget, so a script that re-read
//! every worker record would show here.
//! Run: cargo bench -p registre-capacity

use std::collections::HashMap;
use std::time::{Duration, Instant};

use registre_capacity::{Allocation, CapacityManager, CapacitySettings, WorkerType};
use registre_config::Config;
use registre_testkit::RedisServer;

mod common;

const RUN_FOR: Duration = Duration::from_secs(3);

fn top_level_calls(url: &str) -> u64 {
    let mut c = registre_testkit::redis_sync(url);
    let info: String = redis::cmd("INFO").arg("commandstats").query(&mut c).unwrap_or_default();
    let calls: HashMap<String, u64> = info
        .lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?.parse().ok()?;
            Some((name.to_string(), calls))
        })
        .collect();
    ["evalsha", "eval", "script|load", "script", "hello", "client|setinfo", "ping"].iter().filter_map(|n| calls.get(*n)).sum()
}

async fn run(manager: &CapacityManager, in_flight: usize) -> (u64, Duration) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..in_flight)
        .map(|t| {
            let m = manager.clone();
            tokio::spawn(async move { common::allocate_release_cycles(&m, &format!("bench-{t}"), started, RUN_FOR).await })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("task");
    }
    (total, started.elapsed())
}

#[tokio::main]
async fn main() {
    let redis = RedisServer::start();
    let url = redis.url();
    let vars = [("REDIS_URL", url.as_str()), ("DATABASE_URL", "postgres://localhost/unused"), ("SERVER_MAX_CPU", "100000"), ("SERVER_MAX_RAM", "100000")];
    let config = Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string()))).expect("config");
    let conn = registre_runtime::redis_connection(&config.redis_url).expect("redis");
    let manager = CapacityManager::new(conn, CapacitySettings::from_config(&config));
    // Warm up: connect and load the scripts once.
    manager.status().await.expect("status");
    let others: usize = std::env::var("BENCH_WORKERS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    for i in 0..others {
        match manager.allocate(&format!("other-{i}"), WorkerType::ActeOcr).await.expect("allocate") {
            Allocation::Granted { .. } => {}
            refused => panic!("the other leases must fit: {refused:?}"),
        }
    }

    println!("{others} other live leases in the budget; PING: redis-benchmark -c <in flight> on the same server, same run");
    println!();
    println!("| in flight | cycles (allocate+release) | seconds | cycles/s | operations/s | redis-benchmark PING/s | operations / PING | Redis round trips / operation |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for in_flight in [1usize, 32] {
        let ping = registre_testkit::reference::redis_ping_rate(redis.port, in_flight, if in_flight == 1 { 50_000 } else { 300_000 });
        let before = top_level_calls(&url);
        let (cycles, elapsed) = run(&manager, in_flight).await;
        let after = top_level_calls(&url);
        // The two INFO calls are not commands of the manager's.
        let round_trips = after.saturating_sub(before) as f64;
        let ops = (cycles * 2) as f64;
        let ops_per_s = ops / elapsed.as_secs_f64();
        println!(
            "| {in_flight} | {cycles} | {:.2} | {:.0} | {ops_per_s:.0} | {ping:.0} | {:.0} % | {:.3} |",
            elapsed.as_secs_f64(),
            cycles as f64 / elapsed.as_secs_f64(),
            100.0 * ops_per_s / ping,
            round_trips / ops
        );
    }
}
