//! The capacity manager: the Rust side of the four capacity scripts, plus the wait-for-capacity
//! helper a worker uses at start-up instead of crash-looping when the server is full.

use std::sync::Arc;
use std::sync::LazyLock;
use std::time::Duration;

use registre_runtime::RedisConn;
use redis::{Script, Value};
use registre_config::{CapacityConfig, Config, Milli, WorkerCost};
use registre_domain::keys::CapacityKeys;
use serde::{Deserialize, Serialize};
use registre_runtime::Backoff;
use tokio_util::sync::CancellationToken;

use crate::{CapacityError, Lease, WorkerType};

// Each script runs lua/sweep.lua first (expired leases give their capacity back).
static ALLOCATE: LazyLock<Script> = registre_runtime::lua_script!("lua/sweep.lua", "lua/allocate.lua");
static RENEW: LazyLock<Script> = registre_runtime::lua_script!("lua/sweep.lua", "lua/renew.lua");
static RELEASE: LazyLock<Script> = registre_runtime::lua_script!("lua/sweep.lua", "lua/release.lua");
static STATUS: LazyLock<Script> = registre_runtime::lua_script!("lua/sweep.lua", "lua/status.lua");

/// Everything the manager needs, usually taken from [`Config`] with [`CapacitySettings::from_config`].
#[derive(Debug, Clone)]
pub struct CapacitySettings {
    pub keys: CapacityKeys,
    pub usable_cpu: Milli,
    pub usable_ram: Milli,
    pub costs: CapacityConfig,
    pub host: String,
    pub pid: u32,
}

impl CapacitySettings {
    pub fn from_config(config: &Config) -> CapacitySettings {
        CapacitySettings {
            keys: CapacityKeys::for_server(config.server.id.as_deref()),
            usable_cpu: config.server.usable_cpu(),
            usable_ram: config.server.usable_ram(),
            costs: config.capacity.clone(),
            host: registre_runtime::host_name(),
            pid: std::process::id(),
        }
    }

    pub fn cost(&self, kind: WorkerType) -> WorkerCost {
        match kind {
            WorkerType::Registre => self.costs.registre,
            WorkerType::IndexOcr => self.costs.index_ocr,
            WorkerType::ActeOcr => self.costs.acte_ocr,
        }
    }
}

/// Why a worker did not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortfall {
    Cpu { need: Milli, available: Milli },
    Ram { need: Milli, available: Milli },
}

impl std::fmt::Display for Shortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shortfall::Cpu { need, available } => {
                write!(f, "Insufficient CPU (need {need} vCPUs, available {available} vCPUs)")
            }
            Shortfall::Ram { need, available } => {
                write!(f, "Insufficient RAM (need {need} GB, available {available} GB)")
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    /// The lease is held until `expires_at_ms` (Redis clock) unless renewed.
    Granted { expires_at_ms: u64, cpu_allocated: Milli, ram_allocated: Milli },
    Refused(Shortfall),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    Renewed { expires_at_ms: u64 },
    /// The lease had expired: its capacity may be someone else's now; allocate again.
    Lost,
}

/// One entry of `server:workers`, with the JSON field names of docs/design.md §4.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerRecord {
    pub worker_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub cpu: f64,
    pub ram: f64,
    pub started_at: u64,
    pub expires_at: u64,
    pub host: String,
    pub pid: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CapacityStatus {
    pub cpu_allocated: Milli,
    pub ram_allocated: Milli,
    pub usable_cpu: Milli,
    pub usable_ram: Milli,
    /// Redis server time of the reading.
    pub now_ms: u64,
    pub workers: Vec<WorkerRecord>,
}

/// Cheap to clone: clones share one self-reconnecting connection.
#[derive(Clone)]
pub struct CapacityManager {
    conn: RedisConn,
    settings: Arc<CapacitySettings>,
}

impl CapacityManager {
    pub fn new(conn: impl Into<RedisConn>, settings: CapacitySettings) -> CapacityManager {
        CapacityManager { conn: conn.into(), settings: Arc::new(settings) }
    }

    pub fn settings(&self) -> &CapacitySettings {
        &self.settings
    }

    /// The shared connection (clones share it).
    pub(crate) fn connection(&self) -> RedisConn {
        self.conn.clone()
    }

    /// Takes (or replaces) the lease of `worker_id` if its type's cost fits. One round trip.
    pub async fn allocate(&self, worker_id: &str, kind: WorkerType) -> Result<Allocation, CapacityError> {
        self.take("allocate", worker_id, kind).await
    }

    /// Moves the lease of `worker_id` to `kind` in one atomic script (lua/allocate.lua): the old
    /// lease is dropped and the new one added in the same step, or, if the new cost does not fit
    /// in what the server would have without the old lease, nothing changes and the old lease is
    /// still held. Never release-then-allocate: another process could take the freed capacity in
    /// between and leave the worker with no lease at all.
    pub async fn switch(&self, worker_id: &str, kind: WorkerType) -> Result<Allocation, CapacityError> {
        self.take("switch", worker_id, kind).await
    }

    /// Allocate and switch are one script (lua/allocate.lua); `name` says which the caller asked.
    async fn take(&self, name: &'static str, worker_id: &str, kind: WorkerType) -> Result<Allocation, CapacityError> {
        let cost = self.settings.cost(kind);
        let ttl = self.settings.costs.lease_ttl.as_millis() as u64;
        let mut inv = ALLOCATE.prepare_invoke();
        for key in self.settings.keys.as_array() {
            inv.key(key);
        }
        inv.arg(worker_id)
            .arg(kind.as_str())
            .arg(cost.cpu.0)
            .arg(cost.ram.0)
            .arg(self.settings.usable_cpu.0)
            .arg(self.settings.usable_ram.0)
            .arg(ttl)
            .arg(&self.settings.host)
            .arg(self.settings.pid);
        let reply: Vec<Value> = inv
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|source| CapacityError::Redis { operation: name, source })?;
        let int = |i: usize| int_at(&reply, i, name);
        match int(0)? {
            1 => Ok(Allocation::Granted {
                expires_at_ms: int(1)?,
                cpu_allocated: Milli(int(2)?),
                ram_allocated: Milli(int(3)?),
            }),
            _ => {
                let resource = string_at(&reply, 1, name)?;
                let (need, available) = (Milli(int(2)?), Milli(int(3)?));
                Ok(Allocation::Refused(match resource.as_str() {
                    "cpu" => Shortfall::Cpu { need, available },
                    _ => Shortfall::Ram { need, available },
                }))
            }
        }
    }

    /// Extends the lease by one TTL, or reports it lost if it had already expired.
    pub async fn renew(&self, worker_id: &str) -> Result<Renewal, CapacityError> {
        let ttl = self.settings.costs.lease_ttl.as_millis() as u64;
        let mut inv = RENEW.prepare_invoke();
        for key in self.settings.keys.as_array() {
            inv.key(key);
        }
        inv.arg(worker_id).arg(ttl);
        let reply: Vec<Value> = inv
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|source| CapacityError::Redis { operation: "renew", source })?;
        match int_at(&reply, 0, "renew")? {
            1 => Ok(Renewal::Renewed { expires_at_ms: int_at(&reply, 1, "renew")? }),
            _ => Ok(Renewal::Lost),
        }
    }

    /// Gives the capacity back. Idempotent: returns whether a live lease was removed.
    pub async fn release(&self, worker_id: &str) -> Result<bool, CapacityError> {
        let mut inv = RELEASE.prepare_invoke();
        for key in self.settings.keys.as_array() {
            inv.key(key);
        }
        inv.arg(worker_id);
        let removed: i64 = inv
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|source| CapacityError::Redis { operation: "release", source })?;
        Ok(removed == 1)
    }

    /// Reads the status, retrying with capped backoff while Redis does not answer; each retry is
    /// logged as "`waiting` (the error): retrying in N ms". None if `cancel` fired first. The
    /// binaries call it at start-up, so a Redis that comes up after them is waited for.
    pub async fn status_once_reachable(&self, cancel: &CancellationToken, waiting: &str) -> Option<CapacityStatus> {
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
        loop {
            match self.status().await {
                Ok(status) => return Some(status),
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!("{waiting} ({e}): retrying in {} ms", delay.as_millis());
                    tokio::select! {
                        _ = cancel.cancelled() => return None,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    pub async fn status(&self) -> Result<CapacityStatus, CapacityError> {
        let mut inv = STATUS.prepare_invoke();
        for key in self.settings.keys.as_array() {
            inv.key(key);
        }
        let reply: Vec<Value> = inv
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|source| CapacityError::Redis { operation: "status", source })?;
        let mut workers = Vec::with_capacity(reply.len().saturating_sub(3));
        for i in 3..reply.len() {
            let json = string_at(&reply, i, "status")?;
            let record: WorkerRecord = serde_json::from_str(&json)
                .map_err(|e| CapacityError::Reply { script: "status", detail: format!("worker record {json}: {e}") })?;
            workers.push(record);
        }
        workers.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
        Ok(CapacityStatus {
            cpu_allocated: Milli(int_at(&reply, 0, "status")?),
            ram_allocated: Milli(int_at(&reply, 1, "status")?),
            usable_cpu: self.settings.usable_cpu,
            usable_ram: self.settings.usable_ram,
            now_ms: int_at(&reply, 2, "status")?,
            workers,
        })
    }

    /// Allocates once and, if granted, returns a [`Lease`] whose heartbeat keeps it alive.
    pub async fn try_lease(&self, worker_id: &str, kind: WorkerType) -> Result<Result<Lease, Shortfall>, CapacityError> {
        match self.allocate(worker_id, kind).await? {
            Allocation::Granted { .. } => Ok(Ok(Lease::start(self.clone(), worker_id.to_string(), kind))),
            Allocation::Refused(shortfall) => Ok(Err(shortfall)),
        }
    }

    /// Waits until `worker_id` fits, then returns its lease; `None` if `cancel` fired first.
    /// Logs why it waits, with the numbers, and retries with capped backoff, so a full server
    /// makes a worker wait rather than crash-loop under PM2. Redis errors are retried the same way.
    pub async fn wait_for_lease(&self, worker_id: &str, kind: WorkerType, cancel: &CancellationToken) -> Option<Lease> {
        let mut backoff = Backoff::new(Duration::from_millis(250), self.settings.costs.retry_max);
        let started = std::time::Instant::now();
        loop {
            let delay = backoff.next_delay();
            match self.try_lease(worker_id, kind).await {
                Ok(Ok(lease)) => {
                    registre_telemetry::capacity_wait(kind.as_str(), started.elapsed());
                    return Some(lease);
                }
                Ok(Err(shortfall)) => {
                    tracing::warn!(worker = worker_id, kind = kind.as_str(), "⏳ {shortfall}: waiting for capacity (retry in {} ms)", delay.as_millis());
                }
                Err(e) => {
                    tracing::warn!(worker = worker_id, "⏳ capacity check failed ({e}): retrying in {} ms", delay.as_millis());
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return None,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }
}

fn int_at(reply: &[Value], i: usize, script: &'static str) -> Result<u64, CapacityError> {
    registre_runtime::script::int_at(reply, i).map_err(|detail| CapacityError::Reply { script, detail })
}

fn string_at(reply: &[Value], i: usize, script: &'static str) -> Result<String, CapacityError> {
    registre_runtime::script::string_at(reply, i).map_err(|detail| CapacityError::Reply { script, detail })
}
