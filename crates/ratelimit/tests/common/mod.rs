//! What both rate-limiter test binaries (today's Redis, Redis 6.2) need: a limiter on a given
//! server, Redis's own clock, and the busiest rolling window of a run's grants or charges.

use std::time::Duration;

use registre_ratelimit::{RateLimitSettings, RateLimiter};

/// A limiter named `name` on the Redis at `url`, with no arrival margin (the tests measure the
/// limit itself).
pub async fn limiter(url: &str, name: &str, rpm: u64, tpm: u64, window_ms: u64) -> RateLimiter {
    let conn = redis::Client::open(url).expect("redis url").get_connection_manager().await.expect("redis connection");
    let settings = RateLimitSettings {
        name: name.to_string(),
        requests_per_window: rpm,
        tokens_per_window: tpm,
        window: Duration::from_millis(window_ms),
        arrival_margin: Duration::ZERO,
    };
    RateLimiter::new(conn, settings).expect("valid settings")
}

/// Redis server time (ms), the clock every grant time is measured on.
pub fn redis_now_ms(url: &str) -> u64 {
    let mut conn = registre_testkit::redis_sync(url);
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query(&mut conn).expect("TIME");
    secs * 1000 + micros / 1000
}

/// The largest sum of weights over every rolling window [t, t + window) starting at an entry
/// (the maximum over all windows is always reached at one of those), and where it starts.
pub fn max_window(entries: &mut [(u64, u64)], window: u64) -> (u64, u64) {
    entries.sort_unstable();
    let (mut best, mut best_start, mut sum, mut end) = (0, 0, 0, 0);
    for i in 0..entries.len() {
        while end < entries.len() && entries[end].0 < entries[i].0 + window {
            sum += entries[end].1;
            end += 1;
        }
        if sum > best {
            best = sum;
            best_start = entries[i].0;
        }
        sum -= entries[i].1;
    }
    (best, best_start)
}

/// Polls until every key of the limiter `name` has expired (deadline 30 s): the limiter sat idle
/// longer than its keys live.
pub async fn wait_until_keys_expired(url: &str, name: &str) {
    let mut conn = registre_testkit::redis_sync(url);
    let pattern = format!("ratelimit:{{{name}}}:*");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query(&mut conn).expect("KEYS");
        if keys.is_empty() {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "keys never expired: {keys:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
