//! One way to reach Redis for every crate, a single server or a Redis Cluster alike (DESIGN §13):
//! [`RedisConn`] is what the capacity manager, the rate limiter, the pool manager and the
//! operations code hold, so none of them knows which of the two it talks to.
//! - single server: a ConnectionManager that reconnects by itself after a lost connection or a
//!   Redis restart;
//! - cluster (REDIS_CLUSTER=true): the redis crate's async cluster client, which routes every
//!   command (and every script, by its keys: all of one hash slot) to the slot's master, follows
//!   MOVED/ASK redirections and refreshes its slot map when a replica takes over a failed master.
//!
//! Both connect lazily, so a binary started while Redis is down keeps retrying (callers see
//! errors and back off) instead of crashing under PM2.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use registre_config::{RedisTarget, SecretUrl};

/// Connection set-up: 2 s; one command's answer: 5 s. Short, so the retry loops of the callers
/// stay in charge of pacing while Redis (or a cluster node) is down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
#[error("Redis URL {url} cannot be used: {source}")]
pub struct RedisConnectError {
    /// Redacted.
    url: String,
    source: redis::RedisError,
}

/// A lazily connecting, self-healing connection to one server or to a cluster. Cheap to clone;
/// clones share the underlying connection(s).
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl From<ConnectionManager> for RedisConn {
    fn from(conn: ConnectionManager) -> RedisConn {
        RedisConn::Single(conn)
    }
}

impl From<ClusterConnection> for RedisConn {
    fn from(conn: ClusterConnection) -> RedisConn {
        RedisConn::Cluster(conn)
    }
}

impl RedisConn {
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisConn::Cluster(_))
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(&'a mut self, pipeline: &'a Pipeline, offset: usize, count: usize) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}

/// The connection REDIS_URL / REDIS_CLUSTER describe (`&config.redis_url`). Commands fail fast
/// while Redis is down (response timeout 5 s, connection timeout 2 s). Must be called inside a
/// tokio runtime (the cluster client runs its routing task on it).
pub fn redis_connection(target: &RedisTarget) -> Result<RedisConn, RedisConnectError> {
    if target.is_cluster() {
        cluster_connection(target.nodes())
    } else {
        single_connection(target.first())
    }
}

/// A connection to one server.
pub fn single_connection(url: &SecretUrl) -> Result<RedisConn, RedisConnectError> {
    let wrap = |source| RedisConnectError { url: url.redacted(), source };
    let client = redis::Client::open(url.expose()).map_err(wrap)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_lazy_with_config(client, config).map(RedisConn::Single).map_err(wrap)
}

/// A connection to the cluster whose seed nodes are `nodes`. A command whose slot's master is
/// unreachable is retried inside the client (slot map refreshed between tries, about 6 s in all:
/// a failover takes `cluster-node-timeout` plus an election), then fails to the caller, whose own
/// loop backs off and tries again.
pub fn cluster_connection(nodes: &[SecretUrl]) -> Result<RedisConn, RedisConnectError> {
    let shown = nodes.iter().map(SecretUrl::redacted).collect::<Vec<_>>().join(",");
    let wrap = |source| RedisConnectError { url: shown.clone(), source };
    let client = ClusterClientBuilder::new(nodes.iter().map(|n| n.expose().to_string()))
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(RESPONSE_TIMEOUT)
        .retries(6)
        .min_retry_wait(100)
        .max_retry_wait(2_000)
        .build()
        .map_err(wrap)?;
    let config = ClusterConfig::new().set_connection_timeout(CONNECT_TIMEOUT).set_response_timeout(RESPONSE_TIMEOUT);
    Ok(RedisConn::Cluster(client.get_pending_async_connection_with_config(config)))
}
