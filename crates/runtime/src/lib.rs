//! What every binary needs around its work, one mechanism each, shared by all binaries:
//! - [`logging`]: human-readable or JSON logs (LOG_FORMAT, RUST_LOG);
//! - [`Shutdown`]: one signal (SIGTERM/SIGINT) fanned out to every task, then a wait until
//!   every task has finished (tokio-util's CancellationToken + TaskTracker);
//! - [`Backoff`]: capped exponential delays with jitter for every retry loop;
//! - [`redis_connection`]: a self-reconnecting Redis connection ([`RedisConn`]: one server or a
//!   Redis Cluster, REDIS_CLUSTER);
//! - [`redis_version`]: the start-up check that the Redis server is 6.0 or newer;
//! - [`run_binary`]: the `main` of every worker binary (config, logs, runtime, shutdown, run);
//! - [`script`]: Lua scripts built from their files, and readers of their replies;
//! - [`RULE`]: the banner rule of the deployment checklist's log blocks.

pub mod backoff;
pub mod logging;
mod main_helper;
pub mod redis_conn;
pub mod redis_version;
pub mod script;
pub mod shutdown;

pub use backoff::Backoff;
pub use main_helper::{run_binary, BinaryError};
pub use redis_conn::{cluster_connection, redis_connection, single_connection, RedisConn, RedisConnectError};
pub use redis_version::{probe_redis_target, probe_redis_version, RedisVersion, RedisVersionError, MINIMUM_REDIS};
pub use shutdown::Shutdown;

/// The banner rule of the deployment checklist: the line above and below every start-up banner
/// and status block.
pub const RULE: &str = "============================================================";

/// This machine's host name, for worker records (`host` field) and logs.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_string())
}
