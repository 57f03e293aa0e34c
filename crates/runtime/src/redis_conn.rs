//! One way to reach Redis for every crate, a single server or a Redis Cluster alike (docs/design.md §13):
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
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
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

    /// Keys matching `pattern` (SCAN, never KEYS: it does not block Redis), at most about `limit`.
    /// On a cluster a SCAN sees the keys of one node only, so every master is scanned in turn
    /// (the masters come from `CLUSTER SLOTS`).
    pub async fn scan_keys(&self, pattern: &str, limit: usize) -> redis::RedisResult<Vec<String>> {
        let mut keys = Vec::new();
        match self {
            RedisConn::Single(c) => {
                scan_node(pattern, limit, &mut keys, |cmd| {
                    let mut conn = c.clone();
                    async move { cmd.query_async::<(u64, Vec<String>)>(&mut conn).await }
                })
                .await?;
            }
            RedisConn::Cluster(c) => {
                let mut conn = c.clone();
                let slots: Vec<Value> = redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut conn).await?;
                let mut masters: Vec<(String, u16)> = slots.iter().filter_map(master_of_range).collect();
                masters.sort();
                masters.dedup();
                for (host, port) in masters {
                    let conn = c.clone();
                    scan_node(pattern, limit, &mut keys, |cmd| {
                        let (mut conn, host) = (conn.clone(), host.clone());
                        async move {
                            let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
                            let value = conn.route_command(cmd, routing).await?;
                            redis::from_redis_value::<(u64, Vec<String>)>(value).map_err(redis::RedisError::from)
                        }
                    })
                    .await?;
                }
            }
        }
        Ok(keys)
    }
}

/// `(host, port)` of the master of one `CLUSTER SLOTS` entry: `[start, end, [host, port, id], ...]`.
fn master_of_range(range: &Value) -> Option<(String, u16)> {
    let Value::Array(items) = range else { return None };
    let Value::Array(master) = items.get(2)? else { return None };
    let host = match master.first()? {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        _ => return None,
    };
    let Value::Int(port) = master.get(1)? else { return None };
    Some((host, u16::try_from(*port).ok()?))
}

/// One node's SCAN loop, through `send` (which knows how to reach that node).
async fn scan_node<F, Fut>(pattern: &str, limit: usize, keys: &mut Vec<String>, send: F) -> redis::RedisResult<()>
where
    F: Fn(Cmd) -> Fut,
    Fut: std::future::Future<Output = redis::RedisResult<(u64, Vec<String>)>>,
{
    let mut cursor: u64 = 0;
    loop {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(1000);
        let (next, batch) = send(cmd).await?;
        keys.extend(batch);
        if next == 0 || keys.len() > limit {
            return Ok(());
        }
        cursor = next;
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
