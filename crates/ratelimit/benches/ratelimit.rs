//! Decisions per second of the shared rate limiter from one process, and Redis round trips per
//! decision measured for real: a private redis-server (testkit::RedisServer) that only this
//! benchmark talks to, `INFO commandstats` read before and after each run.
//! The outside reference runs in the same process: redis-benchmark's PING rate on the same server
//! with as many connections as requests in flight, measured before each row; the `/ PING` column
//! is decisions per second over it (target at 32 in flight: >= 50 %).
//! `cargo bench -p registre-ratelimit` prints a markdown table.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use registre_ratelimit::{Decision, RateLimitSettings, RateLimiter};
use registre_testkit::RedisServer;

const RUN: Duration = Duration::from_secs(2);

struct Scenario {
    label: &'static str,
    in_flight: usize,
    rpm: u64,
    tpm: u64,
    window_ms: u64,
    estimate: u64,
}

fn commandstats(conn: &mut redis::Connection) -> HashMap<String, u64> {
    let info: String = redis::cmd("INFO").arg("commandstats").query(conn).unwrap_or_default();
    info.lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?.parse().ok()?;
            Some((name.to_string(), calls))
        })
        .collect()
}

/// Commands a client sends (one round trip each) versus commands the scripts run inside Redis.
fn is_client_command(name: &str) -> bool {
    name.starts_with("eval") || name.starts_with("script")
}

async fn run(url: &str, s: &Scenario, ping: f64) -> String {
    let conn = redis::Client::open(url).expect("client").get_connection_manager().await.expect("connection");
    let settings = RateLimitSettings {
        name: format!("bench-{}", s.label.replace(' ', "-")),
        requests_per_window: s.rpm,
        tokens_per_window: s.tpm,
        window: Duration::from_millis(s.window_ms),
        arrival_margin: Duration::ZERO,
    };
    let limiter = RateLimiter::new(conn, settings).expect("settings");
    // Warm up: loads the scripts (EVALSHA → NOSCRIPT → EVAL once), fills a saturated limiter.
    for _ in 0..(s.rpm.min(5_000)) {
        let _ = limiter.acquire(s.estimate).await;
    }
    let mut sync = redis::Client::open(url).and_then(|c| c.get_connection()).expect("sync connection");
    let before = commandstats(&mut sync);
    let (decisions, grants) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..s.in_flight {
        let (limiter, decisions, grants, estimate) = (limiter.clone(), decisions.clone(), grants.clone(), s.estimate);
        tasks.push(tokio::spawn(async move {
            while start.elapsed() < RUN {
                match limiter.acquire(estimate).await {
                    Ok(Decision::Granted(_)) => {
                        grants.fetch_add(1, Ordering::Relaxed);
                        decisions.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Decision::Wait { .. }) => {
                        decisions.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => panic!("acquire: {e}"),
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed();
    let after = commandstats(&mut sync);
    let delta = |client: bool| -> u64 {
        after
            .iter()
            .filter(|(name, _)| is_client_command(name) == client && !name.starts_with("info"))
            .map(|(name, calls)| calls - before.get(name).copied().unwrap_or(0))
            .sum()
    };
    let (n, g) = (decisions.load(Ordering::Relaxed), grants.load(Ordering::Relaxed));
    let per_sec = n as f64 / elapsed.as_secs_f64();
    format!(
        "| {} | {} | {:.0} | {ping:.0} | {:.0} % | {:.0} % | {:.3} | {:.1} | {:.0} µs |",
        s.label,
        s.in_flight,
        per_sec,
        100.0 * per_sec / ping,
        g as f64 * 100.0 / n.max(1) as f64,
        delta(true) as f64 / n.max(1) as f64,
        delta(false) as f64 / n.max(1) as f64,
        elapsed.as_micros() as f64 * s.in_flight as f64 / n.max(1) as f64,
    )
}

fn main() {
    let server = RedisServer::start();
    let url = server.url();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let scenarios = [
        Scenario { label: "granting (1 s window, limits never reached)", in_flight: 1, rpm: 1 << 40, tpm: 1 << 50, window_ms: 1000, estimate: 1000 },
        Scenario { label: "granting (1 s window, limits never reached)", in_flight: 32, rpm: 1 << 40, tpm: 1 << 50, window_ms: 1000, estimate: 1000 },
        Scenario { label: "saturated on requests (1600 / 60 s, full)", in_flight: 1, rpm: 1600, tpm: 6_400_000, window_ms: 60_000, estimate: 1000 },
        Scenario { label: "saturated on requests (1600 / 60 s, full)", in_flight: 32, rpm: 1600, tpm: 6_400_000, window_ms: 60_000, estimate: 1000 },
        Scenario { label: "saturated on tokens (1600 charges of 4000 in 60 s)", in_flight: 32, rpm: 1_000_000, tpm: 6_400_000, window_ms: 60_000, estimate: 4000 },
    ];
    println!("| scenario | in flight | decisions/s | redis-benchmark PING/s | decisions / PING | granted | Redis round trips / decision | commands run inside Redis / decision | mean latency |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for s in &scenarios {
        let ping = registre_testkit::reference::redis_ping_rate(server.port, s.in_flight, if s.in_flight == 1 { 50_000 } else { 300_000 });
        println!("{}", rt.block_on(run(&url, s, ping)));
    }
    drop(server);
}
