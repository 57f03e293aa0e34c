//! What Redis says right now: the live workers (capacity leases of every server, joined with the
//! OCR pool assignments), capacity per server, the shared rate limit's current rolling window and
//! the pool allocation. Servers are found in the registry every server refreshes (`servers`, a
//! sorted set scored by expiry, crates/capacity budget.rs), never by SCAN, so one registre-api
//! sees every server sharing its Redis at a cost that does not grow with the keyspace. Each
//! server's capacity is judged against the budget it published itself (`server:budget` /
//! `server:{x}:budget`); a server that published none has no usable figure (None) and is not
//! judged. Reads go through the owning crates' status scripts.

use std::collections::{BTreeMap, BTreeSet};

use registre_runtime::RedisConn;
use registre_capacity::{CapacityManager, CapacitySettings};
use registre_config::Config;
use registre_domain::keys::{CapacityKeys, PoolKeys};
use registre_domain::pool::{AllocationRecord, AssignmentRecord};
use registre_ratelimit::{RateLimitSettings, RateLimiter};
use serde::Serialize;

use crate::OpsError;

/// One live worker: its capacity lease, and its OCR mode if the pool assigned one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveWorker {
    /// SERVER_ID of its server; None for the default (un-namespaced) keys.
    pub server: Option<String>,
    pub worker_id: String,
    /// registre, index-ocr or acte-ocr.
    #[serde(rename = "type")]
    pub kind: String,
    pub cpu: f64,
    pub ram: f64,
    pub host: String,
    pub pid: u32,
    pub started_at_ms: u64,
    pub lease_expires_at_ms: u64,
    /// index or acte, from `worker_pool:assignments` (OCR workers only).
    pub assigned_mode: Option<String>,
}

/// One server's capacity budget.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CapacityView {
    pub server: Option<String>,
    pub cpu_allocated: f64,
    pub ram_allocated: f64,
    /// The usable budget the server published itself (its SERVER_MAX_* × (1 − reserve)); None
    /// when it published none (no live worker there, or an older version): not judged then.
    pub cpu_usable: Option<f64>,
    pub ram_usable: Option<f64>,
    pub workers: usize,
}

impl CapacityView {
    /// Whether the server holds more than the budget it published itself (must never happen);
    /// None when it published no budget: it is then not judged. Milli-unit sums: a thousandth of
    /// slack covers the f64 conversion.
    pub fn above_budget(&self) -> Option<bool> {
        match (self.cpu_usable, self.ram_usable) {
            (Some(cpu), Some(ram)) => Some(self.cpu_allocated > cpu + 0.0005 || self.ram_allocated > ram + 0.0005),
            _ => None,
        }
    }
}

/// The shared OCR API limit, current rolling window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateLimitView {
    pub name: String,
    pub requests: u64,
    pub requests_limit: u64,
    pub tokens: u64,
    pub tokens_limit: u64,
    pub window_seconds: f64,
    /// Seconds left of a cooldown after a 429 (0 when none).
    pub cooldown_seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolView {
    pub server: Option<String>,
    pub allocation: AllocationRecord,
}

/// Everything Redis holds that an operator looks at, read in one go.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveView {
    pub workers: Vec<LiveWorker>,
    pub capacity: Vec<CapacityView>,
    pub rate_limit: RateLimitView,
    pub pools: Vec<PoolView>,
}

/// The Redis side of [`crate::Ops`].
#[derive(Clone)]
pub struct Live {
    conn: RedisConn,
    own_server: Option<String>,
    capacity: CapacitySettings,
    rate_limit: RateLimitSettings,
}

fn redis_err(operation: &'static str) -> impl FnOnce(redis::RedisError) -> OpsError {
    move |e| OpsError::Redis { operation, detail: e.to_string() }
}

impl Live {
    pub fn from_config(config: &Config) -> Result<Live, registre_runtime::RedisConnectError> {
        let conn = registre_runtime::redis_connection(&config.redis_url)?;
        Ok(Live::new(conn, config))
    }

    pub fn new(conn: impl Into<RedisConn>, config: &Config) -> Live {
        Live {
            conn: conn.into(),
            own_server: config.server.id.clone(),
            capacity: CapacitySettings::from_config(config),
            rate_limit: RateLimitSettings::from_config(&config.rate_limit),
        }
    }

    /// PING, for /ready.
    pub async fn ping(&self) -> Result<(), OpsError> {
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("PING");
        match tokio::time::timeout(crate::QUERY_TIMEOUT, cmd.query_async::<String>(&mut conn)).await {
            Ok(r) => r.map(|_| ()).map_err(redis_err("PING")),
            Err(_) => Err(OpsError::Redis { operation: "PING", detail: "no answer".into() }),
        }
    }

    /// The live servers of the registry (`servers`, refreshed by every server's lease heartbeats),
    /// plus this process's own.
    async fn servers(&self) -> Result<BTreeSet<Option<String>>, OpsError> {
        let mut servers = BTreeSet::new();
        servers.insert(self.own_server.clone());
        let live = registre_capacity::live_servers(&self.conn)
            .await
            .map_err(|e| OpsError::Redis { operation: "listing the servers", detail: e.to_string() })?;
        servers.extend(live);
        Ok(servers)
    }

    /// Workers, capacity per server, rate limit and pool allocations, from Redis.
    pub async fn view(&self) -> Result<LiveView, OpsError> {
        match tokio::time::timeout(crate::QUERY_TIMEOUT, self.view_inner()).await {
            Ok(r) => r,
            Err(_) => Err(OpsError::Redis { operation: "reading the live state", detail: "no answer".into() }),
        }
    }

    async fn view_inner(&self) -> Result<LiveView, OpsError> {
        let mut conn = self.conn.clone();
        let mut workers = Vec::new();
        let mut capacity = Vec::new();
        let mut pools = Vec::new();
        for server in self.servers().await? {
            let settings = CapacitySettings { keys: CapacityKeys::for_server(server.as_deref()), ..self.capacity.clone() };
            let status = CapacityManager::new(conn.clone(), settings)
                .status()
                .await
                .map_err(|e| OpsError::Redis { operation: "capacity status", detail: e.to_string() })?;
            let pool_keys = PoolKeys::for_server(server.as_deref());
            let assignments: BTreeMap<String, String> =
                redis::cmd("HGETALL").arg(&pool_keys.assignments).query_async(&mut conn).await.map_err(redis_err("HGETALL"))?;
            let modes: BTreeMap<String, String> = assignments
                .into_iter()
                .filter_map(|(id, json)| serde_json::from_str::<AssignmentRecord>(&json).ok().map(|a| (id, a.assigned_mode)))
                .collect();
            let allocation: Option<String> =
                redis::cmd("GET").arg(&pool_keys.allocation).query_async(&mut conn).await.map_err(redis_err("GET"))?;
            if let Some(record) = allocation.and_then(|json| serde_json::from_str::<AllocationRecord>(&json).ok()) {
                pools.push(PoolView { server: server.clone(), allocation: record });
            }
            let budget = registre_capacity::published_budget(&self.conn, server.as_deref())
                .await
                .map_err(|e| OpsError::Redis { operation: "reading a budget", detail: e.to_string() })?;
            capacity.push(CapacityView {
                server: server.clone(),
                cpu_allocated: status.cpu_allocated.0 as f64 / 1000.0,
                ram_allocated: status.ram_allocated.0 as f64 / 1000.0,
                cpu_usable: budget.map(|b| b.cpu.0 as f64 / 1000.0),
                ram_usable: budget.map(|b| b.ram.0 as f64 / 1000.0),
                workers: status.workers.len(),
            });
            for w in status.workers {
                workers.push(LiveWorker {
                    server: server.clone(),
                    assigned_mode: modes.get(&w.worker_id).cloned(),
                    worker_id: w.worker_id,
                    kind: w.kind,
                    cpu: w.cpu,
                    ram: w.ram,
                    host: w.host,
                    pid: w.pid,
                    started_at_ms: w.started_at,
                    lease_expires_at_ms: w.expires_at,
                });
            }
        }
        let rate_limit = self.rate_limit().await?;
        Ok(LiveView { workers, capacity, rate_limit, pools })
    }

    /// Requests and tokens admitted in the current rolling window, and the cooldown left.
    pub async fn rate_limit(&self) -> Result<RateLimitView, OpsError> {
        let limiter = RateLimiter::new(self.conn.clone(), self.rate_limit.clone())
            .map_err(|e| OpsError::Redis { operation: "rate limit status", detail: e.to_string() })?;
        let s = limiter.status().await.map_err(|e| OpsError::Redis { operation: "rate limit status", detail: e.to_string() })?;
        Ok(RateLimitView {
            name: self.rate_limit.name.clone(),
            requests: s.requests_in_window,
            requests_limit: s.requests_per_window,
            tokens: s.tokens_in_window,
            tokens_limit: s.tokens_per_window,
            window_seconds: s.window.as_secs_f64(),
            cooldown_seconds: s.cooldown_remaining.map(|d| d.as_secs_f64()).unwrap_or(0.0),
        })
    }
}

/// What `registrectl release-capacity` did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeaseRelease {
    pub server: Option<String>,
    pub worker_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// `expired` (past its expiry), `not_renewed` (its expiry did not move while watched) or
    /// `forced` (released although it may still be renewed).
    pub was: &'static str,
}

impl Live {
    /// Servers (as in [`LiveWorker::server`]) whose capacity leases include `worker_id`.
    async fn servers_holding(&self, worker_id: &str) -> Result<Vec<Option<String>>, OpsError> {
        let mut conn = self.conn.clone();
        let mut found = Vec::new();
        for server in self.servers().await? {
            let keys = CapacityKeys::for_server(server.as_deref());
            let held: bool =
                redis::cmd("HEXISTS").arg(&keys.workers).arg(worker_id).query_async(&mut conn).await.map_err(redis_err("HEXISTS"))?;
            if held {
                found.push(server);
            }
        }
        Ok(found)
    }

    async fn lease_expiry(&self, keys: &CapacityKeys, worker_id: &str) -> Result<(Option<f64>, u64), OpsError> {
        let mut conn = self.conn.clone();
        let expiry: Option<f64> =
            redis::cmd("ZSCORE").arg(&keys.leases).arg(worker_id).query_async(&mut conn).await.map_err(redis_err("ZSCORE"))?;
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.map_err(redis_err("TIME"))?;
        Ok((expiry, secs * 1000 + micros / 1000))
    }

    /// Releases the capacity lease of `worker_id` (and its pool assignment) so its capacity comes
    /// back now rather than at expiry: for a worker that is known dead. A lease past its expiry is
    /// released at once; otherwise it is watched for `watch` (longer than the heartbeat interval)
    /// and released only if its expiry did not move, i.e. nobody renews it. `force` skips the watch.
    /// `server`: the SERVER_ID whose keys hold it; None searches every server in Redis.
    pub async fn release_lease(
        &self,
        worker_id: &str,
        server: Option<Option<String>>,
        force: bool,
        watch: std::time::Duration,
    ) -> Result<LeaseRelease, OpsError> {
        let server = match server {
            Some(s) => s,
            None => {
                let mut found = self.servers_holding(worker_id).await?;
                match found.len() {
                    0 => return Err(OpsError::LeaseNotFound { worker_id: worker_id.to_string() }),
                    1 => found.remove(0),
                    _ => {
                        return Err(OpsError::LeaseAmbiguous {
                            worker_id: worker_id.to_string(),
                            servers: found.iter().map(|s| s.clone().unwrap_or_else(|| "(default)".into())).collect(),
                        })
                    }
                }
            }
        };
        let keys = CapacityKeys::for_server(server.as_deref());
        let settings = CapacitySettings { keys: keys.clone(), ..self.capacity.clone() };
        let manager = CapacityManager::new(self.conn.clone(), settings);
        let kind = manager
            .status()
            .await
            .map_err(|e| OpsError::Redis { operation: "capacity status", detail: e.to_string() })?
            .workers
            .into_iter()
            .find(|w| w.worker_id == worker_id)
            .map(|w| w.kind)
            .ok_or_else(|| OpsError::LeaseNotFound { worker_id: worker_id.to_string() })?;
        let (first, now) = self.lease_expiry(&keys, worker_id).await?;
        let was = if force {
            "forced"
        } else if first.is_none_or(|e| (e as u64) < now) {
            "expired"
        } else {
            let until = std::time::Instant::now() + watch;
            loop {
                let (expiry, _) = self.lease_expiry(&keys, worker_id).await?;
                if expiry != first {
                    return Err(OpsError::LeaseRenewed { worker_id: worker_id.to_string(), watched_ms: watch.as_millis() as u64 });
                }
                if std::time::Instant::now() >= until {
                    break "not_renewed";
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        };
        manager.release(worker_id).await.map_err(|e| OpsError::Redis { operation: "capacity release", detail: e.to_string() })?;
        let mut conn = self.conn.clone();
        let pool_keys = PoolKeys::for_server(server.as_deref());
        let _: i64 =
            redis::cmd("HDEL").arg(&pool_keys.assignments).arg(worker_id).query_async(&mut conn).await.map_err(redis_err("HDEL"))?;
        Ok(LeaseRelease { server, worker_id: worker_id.to_string(), kind, was })
    }
}
