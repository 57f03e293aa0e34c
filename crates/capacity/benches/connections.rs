//! Benchmark behind docs/capacity.md's choice of Redis connection: one multiplexed
//! ConnectionManager shared by every task (what the workers use) against a deadpool-redis pool,
//! under the capacity workload (allocate + release, each one EVALSHA of the real Lua scripts, on
//! one server's keys) with 1 to 64 operations in flight, against a private redis-server. The
//! outside reference, run in the same process on the same server, is `redis-benchmark` calling
//! the same allocate script with the same concurrency and as many leases live.
//! Run: cargo bench -p registre-capacity --bench connections

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use registre_capacity::{CapacityManager, CapacitySettings, WorkerType};
use registre_domain::keys::CapacityKeys;
use registre_config::Config;
use registre_testkit::RedisServer;

mod common;

const RUN_FOR: Duration = Duration::from_secs(3);
const IN_FLIGHT: [usize; 4] = [1, 8, 32, 64];

/// The source of a capacity script as the manager builds it (lua/sweep.lua first).
fn source(file: &str) -> String {
    let sweep = include_str!("../src/lua/sweep.lua");
    let body = match file {
        "allocate" => include_str!("../src/lua/allocate.lua"),
        _ => include_str!("../src/lua/release.lua"),
    };
    format!("{sweep}\n{body}")
}

fn script(file: &str) -> deadpool_redis::redis::Script {
    deadpool_redis::redis::Script::new(&source(file))
}

/// The arguments of allocate.lua as CapacityManager::allocate passes them.
fn allocate_args(settings: &CapacitySettings, id: &str) -> Vec<String> {
    let cost = settings.cost(WorkerType::IndexOcr);
    vec![
        id.to_string(),
        WorkerType::IndexOcr.as_str().to_string(),
        cost.cpu.0.to_string(),
        cost.ram.0.to_string(),
        settings.usable_cpu.0.to_string(),
        settings.usable_ram.0.to_string(),
        settings.costs.lease_ttl.as_millis().to_string(),
        settings.host.clone(),
        settings.pid.to_string(),
    ]
}

fn keys(k: &CapacityKeys) -> [String; 4] {
    [k.cpu_allocated.clone(), k.ram_allocated.clone(), k.workers.clone(), k.leases.clone()]
}

/// Runs `in_flight` tasks made by `task` (given its index and the common start) for RUN_FOR and
/// returns the operations per second they counted together.
async fn ops_per_second<F, Fut>(in_flight: usize, task: F) -> f64
where
    F: Fn(usize, Instant) -> Fut,
    Fut: std::future::Future<Output = u64> + Send + 'static,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..in_flight).map(|t| tokio::spawn(task(t, started))).collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("task");
    }
    total as f64 / started.elapsed().as_secs_f64()
}

async fn with_manager(manager: &CapacityManager, in_flight: usize) -> f64 {
    ops_per_second(in_flight, |t, started| {
        let m = manager.clone();
        // Two operations a cycle: the allocate and the release.
        async move { 2 * common::allocate_release_cycles(&m, &format!("cm-{t}"), started, RUN_FOR).await }
    })
    .await
}

async fn with_pool(pool: &deadpool_redis::Pool, settings: &Arc<CapacitySettings>, in_flight: usize) -> f64 {
    let (allocate, release) = (Arc::new(script("allocate")), Arc::new(script("release")));
    ops_per_second(in_flight, |t, started| {
        let (pool, settings, allocate, release) = (pool.clone(), settings.clone(), allocate.clone(), release.clone());
        async move {
            let id = format!("pool-{t}");
            let keys = keys(&settings.keys);
            let args = allocate_args(&settings, &id);
            let mut ops = 0u64;
            while started.elapsed() < RUN_FOR {
                let reply = pooled_call(&pool, &allocate, &keys, &args).await;
                let granted = matches!(&reply, deadpool_redis::redis::Value::Array(items) if items.first() == Some(&deadpool_redis::redis::Value::Int(1)));
                assert!(granted, "allocation refused: {reply:?}");
                pooled_call(&pool, &release, &keys, std::slice::from_ref(&id)).await;
                ops += 2;
            }
            ops
        }
    })
    .await
}

/// One script call on a connection checked out of the pool for it, as a pooled client uses it.
async fn pooled_call(pool: &deadpool_redis::Pool, script: &deadpool_redis::redis::Script, keys: &[String], args: &[String]) -> deadpool_redis::redis::Value {
    let mut conn = pool.get().await.expect("pooled connection");
    let mut inv = script.prepare_invoke();
    for k in keys {
        inv.key(k);
    }
    for a in args {
        inv.arg(a);
    }
    inv.invoke_async(&mut *conn).await.expect("script call")
}

/// redis-benchmark running the allocate script (EVALSHA, same keys and arguments) with `clients`
/// connections; its requests per second.
fn reference(port: u16, sha: &str, settings: &CapacitySettings, clients: usize) -> f64 {
    let mut cmd = Command::new("redis-benchmark");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-c", &clients.to_string(), "-n", &(20_000 * clients.min(8)).to_string(), "-q"]);
    cmd.args(["EVALSHA", sha, "4"]).args(keys(&settings.keys)).args(allocate_args(settings, "reference"));
    let out = cmd.output().expect("redis-benchmark (redis-tools) is installed by scripts/local-services.sh");
    let text = String::from_utf8_lossy(&out.stdout);
    // "EVALSHA ...: 41152.26 requests per second, p50=0.143 msec" (the last \r-separated part).
    text.rsplit('\r')
        .find_map(|part| part.split(": ").nth(1).and_then(|rest| rest.split_whitespace().next()).and_then(|n| n.parse().ok()))
        .unwrap_or_else(|| panic!("no requests per second in redis-benchmark's output: {text}"))
}

#[tokio::main]
async fn main() {
    let redis = RedisServer::start();
    let url = redis.url();
    let server_id = registre_testkit::unique("bench-conn");
    let vars = [
        ("REDIS_URL", url.as_str()),
        ("DATABASE_URL", "postgres://localhost/unused"),
        ("SERVER_ID", server_id.as_str()),
        ("SERVER_MAX_CPU", "100000"),
        ("SERVER_MAX_RAM", "100000"),
    ];
    let config = Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string()))).expect("config");
    let settings = Arc::new(CapacitySettings::from_config(&config));
    let manager = CapacityManager::new(registre_runtime::redis_connection(&config.redis_url).expect("redis"), (*settings).clone());
    manager.status().await.expect("status"); // connect and load the scripts once

    // Load the allocate script for redis-benchmark's EVALSHA.
    let mut sync = registre_testkit::redis_sync(&url);
    let sha: String = redis::cmd("SCRIPT").arg("LOAD").arg(source("allocate")).query(&mut sync).expect("SCRIPT LOAD");

    println!("capacity workload (allocate + release, one EVALSHA each), {} s per cell, operations/s", RUN_FOR.as_secs());
    println!("| in flight | ConnectionManager (1 multiplexed conn) | deadpool-redis, pool 8 | deadpool-redis, pool 32 | redis-benchmark EVALSHA allocate (reference) |");
    println!("|---:|---:|---:|---:|---:|");
    for in_flight in IN_FLIGHT {
        let cm = with_manager(&manager, in_flight).await;
        let mut pooled = Vec::new();
        for size in [8usize, 32] {
            let mut cfg = deadpool_redis::Config::from_url(url.clone());
            cfg.pool = Some(deadpool_redis::PoolConfig::new(size));
            let pool = cfg.create_pool(Some(deadpool_redis::Runtime::Tokio1)).expect("pool");
            pooled.push(with_pool(&pool, &settings, in_flight).await);
        }
        // The scripts' work grows with the live leases (they recompute the sums from them): the
        // reference runs with as many held as the arms had in flight.
        let held: Vec<String> = (0..in_flight).map(|i| format!("held-{i}")).collect();
        for id in &held {
            manager.allocate(id, WorkerType::IndexOcr).await.expect("allocate");
        }
        let reference = reference(redis.port, &sha, &settings, in_flight);
        for id in &held {
            manager.release(id).await.expect("release");
        }
        println!("| {in_flight} | {cm:.0} | {:.0} | {:.0} | {reference:.0} |", pooled[0], pooled[1]);
    }
}
