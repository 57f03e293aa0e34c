//! Outside references for the benchmarks: what the machine itself reaches, measured in the same
//! run as the figure compared with it (redis-benchmark for Redis). A benchmark prints both, so a
//! loaded or slow machine shows as a low reference, not as a slow crate.

use std::process::Command;

/// Requests per second `redis-benchmark` gets from the Redis at `port` for PING (the multi-bulk
/// form, what a client library sends) with `clients` connections, one request in flight each
/// (no pipelining), over `requests` requests. Panics with the reason if redis-benchmark is missing
/// or prints nothing usable: a benchmark without its reference is not a benchmark.
pub fn redis_ping_rate(port: u16, clients: usize, requests: u64) -> f64 {
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-c", &clients.to_string(), "-n", &requests.to_string()])
        .args(["-t", "ping", "--csv"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run redis-benchmark (it ships with redis-server: apt install redis-tools): {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    // "PING_MBULK","49751.24",...
    text.lines()
        .find(|l| l.starts_with("\"PING_MBULK\""))
        .and_then(|l| l.split(',').nth(1))
        .and_then(|v| v.trim_matches('"').parse().ok())
        .unwrap_or_else(|| panic!("redis-benchmark printed no PING_MBULK rate: {text} {}", String::from_utf8_lossy(&out.stderr)))
}
