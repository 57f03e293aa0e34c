//! One way to reach Redis for every crate: a ConnectionManager that reconnects by itself after
//! a lost connection or a Redis restart. It connects lazily, so a binary started while Redis is
//! down keeps retrying (callers see errors and back off) instead of crashing under PM2.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use registre_config::SecretUrl;

#[derive(Debug, thiserror::Error)]
#[error("Redis URL {url} cannot be used: {source}")]
pub struct RedisConnectError {
    /// Redacted.
    url: String,
    source: redis::RedisError,
}

/// A lazily connecting, self-healing connection. Commands fail fast while Redis is down
/// (response timeout 5 s, connection timeout 2 s) so retry loops stay in charge of pacing.
pub fn redis_connection(url: &SecretUrl) -> Result<ConnectionManager, RedisConnectError> {
    let wrap = |source| RedisConnectError { url: url.redacted(), source };
    let client = redis::Client::open(url.expose()).map_err(wrap)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_lazy_with_config(client, config).map_err(wrap)
}
