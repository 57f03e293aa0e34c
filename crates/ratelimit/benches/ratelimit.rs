//! Decisions per second of the shared rate limiter from one process, against the outside
//! reference run in the same process on the same private redis-server (testkit::RedisServer, only
//! this benchmark talks to it): the older production system's check+record pair, sent from Rust
//! as that code sends it: ZREMRANGEBYSCORE, ZCARD, GET pipelined (the check), then, when the check
//! passed, ZADD, INCRBY, EXPIRE pipelined (the record). That pair is not atomic (concurrent
//! checks all pass before any record: it overshoots its limits); ours is one atomic script.
//! Both run through the same kind of connection (one multiplexed ConnectionManager) with the same
//! number of requests in flight: that many tasks, each asking for its next decision as soon as it
//! has the last one. What is measured for ours is `RateLimiter::acquire` as workers call it: the
//! acquires of one process in flight at the same moment are decided together by one script call
//! (in order, atomically; each caller gets its own decision), so the table also gives the
//! decisions per script call. Commands run inside Redis per decision and per granted decision are
//! counted from `INFO commandstats` deltas around each run (a script call's commands count once
//! for all the decisions it made), and so is Redis's own time per decision (for ours the script
//! calls' time, which includes the commands they run; for the pair the time of its commands).
//! Neither counts the time Redis spends reading requests and writing replies.
//! Each row is the median of 3 runs, ours and the pair alternating.
//! `cargo bench -p registre-ratelimit` prints a markdown table.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;
use registre_ratelimit::{Decision, RateLimitSettings, RateLimiter};
use registre_testkit::RedisServer;

const RUN: Duration = Duration::from_millis(1500);
const RUNS: usize = 3;

#[derive(Clone, Copy)]
struct Scenario {
    label: &'static str,
    in_flight: usize,
    rpm: u64,
    tpm: u64,
    window_ms: u64,
    estimate: u64,
}

#[derive(Clone, Copy)]
enum Who {
    Ours,
    Pair,
}

#[derive(Clone, Copy, Default)]
struct Measure {
    per_sec: f64,
    granted: f64,
    round_trips: f64,
    commands: f64,
    commands_per_grant: f64,
    /// Redis's time (µs) per decision.
    redis_us: f64,
}

/// Per command: (calls, µs).
fn commandstats(conn: &mut redis::Connection) -> HashMap<String, (u64, u64)> {
    let info: String = redis::cmd("INFO").arg("commandstats").query(conn).unwrap_or_default();
    info.lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let field = |k: &str| rest.split(',').find_map(|kv| kv.strip_prefix(k))?.parse().ok();
            Some((name.to_string(), (field("calls=")?, field("usec=")?)))
        })
        .collect()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").ok().and_then(|l| l.split_whitespace().next().map(str::to_string)).unwrap_or_else(|| "?".into())
}

/// Scripts are one round trip each; every other command the client sends is one too (the pair's).
fn is_script_call(name: &str) -> bool {
    name.starts_with("eval") || name.starts_with("script")
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The production pair's keys for one scenario: the requests zset and the tokens counter.
struct PairKeys {
    requests: String,
    tokens: String,
}

/// One decision of the production pair: the check pipeline, then the record pipeline if it passed.
async fn pair_decision(conn: &mut ConnectionManager, keys: &PairKeys, s: &Scenario, member: u64) -> bool {
    let now = now_ms();
    let (count, used): (u64, Option<u64>) = redis::pipe()
        .cmd("ZREMRANGEBYSCORE")
        .arg(&keys.requests)
        .arg(0)
        .arg(now.saturating_sub(s.window_ms))
        .ignore()
        .cmd("ZCARD")
        .arg(&keys.requests)
        .cmd("GET")
        .arg(&keys.tokens)
        .query_async(conn)
        .await
        .expect("pair check");
    if count >= s.rpm || used.unwrap_or(0) + s.estimate > s.tpm {
        return false;
    }
    let () = redis::pipe()
        .cmd("ZADD")
        .arg(&keys.requests)
        .arg(now)
        .arg(member)
        .ignore()
        .cmd("INCRBY")
        .arg(&keys.tokens)
        .arg(s.estimate)
        .ignore()
        .cmd("EXPIRE")
        .arg(&keys.requests)
        .arg(s.window_ms.div_ceil(1000))
        .ignore()
        .query_async(conn)
        .await
        .expect("pair record");
    true
}

async fn run(url: &str, s: &Scenario, who: Who, limiter: &RateLimiter, pair: &Arc<PairKeys>) -> Measure {
    let conn = redis::Client::open(url).expect("client").get_connection_manager().await.expect("connection");
    let mut sync = redis::Client::open(url).and_then(|c| c.get_connection()).expect("sync connection");
    let before = commandstats(&mut sync);
    let (decisions, grants, members) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..s.in_flight {
        let (limiter, decisions, grants, members, pair, estimate) =
            (limiter.clone(), decisions.clone(), grants.clone(), members.clone(), pair.clone(), s.estimate);
        let mut conn = conn.clone();
        let s = *s;
        tasks.push(tokio::spawn(async move {
            while start.elapsed() < RUN {
                let granted = match who {
                    Who::Ours => match limiter.acquire(estimate).await {
                        Ok(Decision::Granted(_)) => true,
                        Ok(Decision::Wait { .. }) => false,
                        Err(e) => panic!("acquire: {e}"),
                    },
                    Who::Pair => pair_decision(&mut conn, &pair, &s, members.fetch_add(1, Ordering::Relaxed)).await,
                };
                decisions.fetch_add(1, Ordering::Relaxed);
                if granted {
                    grants.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("bench task");
    }
    let elapsed = start.elapsed();
    let after = commandstats(&mut sync);
    // (calls, µs) of the commands run directly (scripts: true) or inside the scripts (false).
    let delta = |scripts: bool| -> (u64, u64) {
        after
            .iter()
            .filter(|(name, _)| !name.starts_with("info"))
            .filter(|(name, _)| matches!(who, Who::Pair) || is_script_call(name) == scripts)
            .map(|(name, (calls, usec))| {
                let (c0, u0) = before.get(name).copied().unwrap_or((0, 0));
                (calls - c0, usec - u0)
            })
            .fold((0, 0), |(c, u), (dc, du)| (c + dc, u + du))
    };
    let (n, g) = (decisions.load(Ordering::Relaxed).max(1) as f64, grants.load(Ordering::Relaxed) as f64);
    let inside = delta(false).0 as f64;
    let (round_trips, redis_us) = match who {
        Who::Ours => (delta(true).0 as f64, delta(true).1 as f64),
        // Two pipelines per granted decision, one per refused one.
        Who::Pair => (n + g, delta(false).1 as f64),
    };
    Measure {
        per_sec: n / elapsed.as_secs_f64(),
        granted: g / n,
        round_trips: round_trips / n,
        commands: inside / n,
        commands_per_grant: if g > 0.0 { inside / g } else { f64::NAN },
        redis_us: redis_us / n,
    }
}

fn median(mut v: Vec<Measure>) -> Measure {
    v.sort_by(|a, b| a.per_sec.total_cmp(&b.per_sec));
    v[v.len() / 2]
}

fn main() {
    let server = RedisServer::start();
    let url = server.url();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let scenarios = [
        Scenario { label: "granting (1 s window, limits never reached)", in_flight: 1, rpm: 1 << 40, tpm: 1 << 50, window_ms: 1000, estimate: 1000 },
        Scenario { label: "granting (1 s window, limits never reached)", in_flight: 32, rpm: 1 << 40, tpm: 1 << 50, window_ms: 1000, estimate: 1000 },
        Scenario { label: "saturated on requests (1600 / 60 s, full)", in_flight: 32, rpm: 1600, tpm: 6_400_000, window_ms: 60_000, estimate: 1000 },
        Scenario { label: "saturated on tokens (1600 charges of 4000 in 60 s)", in_flight: 32, rpm: 1_000_000, tpm: 6_400_000, window_ms: 60_000, estimate: 4000 },
    ];
    let version = {
        let mut conn = registre_testkit::redis_sync(&url);
        let info: String = redis::cmd("INFO").arg("server").query(&mut conn).unwrap_or_default();
        info.lines().find_map(|l| l.strip_prefix("redis_version:")).unwrap_or("?").trim().to_string()
    };
    println!(
        "redis-server {version}; median of {RUNS} runs of {} ms each, ours and the pair alternating; commands and µs = inside Redis (INFO commandstats); load = 1-minute load average before the row.",
        RUN.as_millis()
    );
    println!();
    println!("| scenario | in flight | ours, decisions/s | check+record pair, decisions/s | ours / pair | granted (ours, pair) | commands / decision (ours, pair) | commands / granted decision (ours) | script calls / decision (ours); round trips / decision (pair) | Redis µs / decision (ours, pair) | load |");
    println!("|---|---:|---:|---:|---:|---|---|---:|---|---|---:|");
    for (i, s) in scenarios.iter().enumerate() {
        let ours_limiter = rt.block_on(async {
            let conn = redis::Client::open(url.as_str()).expect("client").get_connection_manager().await.expect("connection");
            let settings = RateLimitSettings {
                name: format!("bench-{i}"),
                requests_per_window: s.rpm,
                tokens_per_window: s.tpm,
                window: Duration::from_millis(s.window_ms),
                arrival_margin: Duration::ZERO,
            };
            let limiter = RateLimiter::new(conn, settings).expect("settings");
            // Warm up: loads the script (EVALSHA → NOSCRIPT → EVAL once), fills a saturated limiter.
            for _ in 0..(s.rpm.min(5_000)) {
                let _ = limiter.acquire(s.estimate).await;
            }
            limiter
        });
        let pair = Arc::new(PairKeys { requests: format!("pair:{{bench-{i}}}:requests"), tokens: format!("pair:{{bench-{i}}}:tokens") });
        rt.block_on(async {
            let mut conn = redis::Client::open(url.as_str()).expect("client").get_connection_manager().await.expect("connection");
            for m in 0..(s.rpm.min(5_000)) {
                pair_decision(&mut conn, &pair, s, u64::MAX - m).await;
            }
        });
        let load = load_average();
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            ours.push(rt.block_on(run(&url, s, Who::Ours, &ours_limiter, &pair)));
            theirs.push(rt.block_on(run(&url, s, Who::Pair, &ours_limiter, &pair)));
        }
        let (o, p) = (median(ours), median(theirs));
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.2}× | {:.0} %, {:.0} % | {:.2}, {:.2} | {} | {:.3}; {:.2} | {:.1}, {:.1} | {} |",
            s.label,
            s.in_flight,
            o.per_sec,
            p.per_sec,
            o.per_sec / p.per_sec,
            o.granted * 100.0,
            p.granted * 100.0,
            o.commands,
            p.commands,
            if o.commands_per_grant.is_nan() { "—".to_string() } else { format!("{:.2}", o.commands_per_grant) },
            o.round_trips,
            p.round_trips,
            o.redis_us,
            p.redis_us,
            load,
        );
    }
    drop(server);
}
