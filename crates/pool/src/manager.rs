//! The pool manager's Redis side: the published allocation (`worker_pool:allocation`, the sum
//! over the live pool processes of the key, each recording its own part in
//! `worker_pool:allocation:processes`), the per-worker assignments (`worker_pool:assignments`)
//! and the rebalancer lock. With SERVER_ID=x the keys are `worker_pool:{x}:...` (a hash tag, as
//! for the capacity keys, so one script can touch the allocation and the parts together). The key
//! formats and the records are the shared vocabulary's (registre_domain::keys, registre_domain::pool).

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;
use registre_domain::keys::PoolKeys;
use registre_domain::pool::{AllocationRecord, AssignmentRecord, QueueCounts};
use registre_runtime::RedisConn;

use crate::{Mode, PoolError, Split};

static LOCK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/rebalance_lock.lua")));
static UNLOCK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/rebalance_unlock.lua")));
static PUBLISH: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/publish_allocation.lua")));

/// Cheap to clone; clones share one self-reconnecting connection.
#[derive(Clone)]
pub struct PoolManager {
    conn: RedisConn,
    keys: PoolKeys,
    owner: String,
    /// How long this process's part of the allocation counts without being published again.
    part_ttl: Duration,
}

fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn redis_err(operation: &'static str) -> impl FnOnce(redis::RedisError) -> PoolError {
    move |source| PoolError::Redis { operation, source }
}

impl PoolManager {
    /// `owner` identifies this pool process in the lock (host and pid make a good one).
    /// `owner` also names this process's part of the allocation, so it must be unique per process.
    pub fn new(conn: impl Into<RedisConn>, keys: PoolKeys, owner: String) -> PoolManager {
        PoolManager { conn: conn.into(), keys, owner, part_ttl: Duration::from_secs(65) }
    }

    /// How long a published part counts in the sum if its process stops publishing (crashed);
    /// the pool uses the rebalancer lock's TTL (2 × the interval + 5 s).
    pub fn with_part_ttl(mut self, ttl: Duration) -> PoolManager {
        self.part_ttl = ttl.max(Duration::from_millis(1));
        self
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn keys(&self) -> &PoolKeys {
        &self.keys
    }

    /// Takes or extends the rebalancer lock for `ttl`; true if this process is the rebalancer.
    pub async fn hold_lock(&self, ttl: Duration) -> Result<bool, PoolError> {
        let held: i64 = LOCK
            .key(&self.keys.lock)
            .arg(&self.owner)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_err("rebalance lock"))?;
        Ok(held == 1)
    }

    pub async fn release_lock(&self) -> Result<(), PoolError> {
        let _: i64 = UNLOCK.key(&self.keys.lock).arg(&self.owner).invoke_async(&mut self.conn.clone()).await.map_err(redis_err("rebalance unlock"))?;
        Ok(())
    }

    /// Records `split` (this process's own workers) and publishes the allocation: the sum of
    /// the live processes' splits, with `queue` as the waiting counts (one script,
    /// lua/publish_allocation.lua). Returns what `worker_pool:allocation` now holds.
    pub async fn publish_allocation(&self, split: Split, queue: QueueCounts) -> Result<AllocationRecord, PoolError> {
        self.publish(split, queue, self.part_ttl).await?
            .ok_or_else(|| PoolError::Encode(format!("{}: nothing published", self.keys.allocation)))
    }

    /// Removes this process's part (on shutdown) and publishes the sum of the others; `None`
    /// when no live process is left (the allocation key is then deleted).
    pub async fn withdraw_allocation(&self) -> Result<Option<AllocationRecord>, PoolError> {
        self.publish(Split { index: 0, acte: 0 }, QueueCounts { index: 0, acte: 0 }, Duration::ZERO).await
    }

    async fn publish(&self, split: Split, queue: QueueCounts, ttl: Duration) -> Result<Option<AllocationRecord>, PoolError> {
        let json: Option<String> = PUBLISH
            .key(&self.keys.allocation)
            .key(&self.keys.processes)
            .arg(&self.owner)
            .arg(split.index)
            .arg(split.acte)
            .arg(queue.index)
            .arg(queue.acte)
            .arg(now_iso())
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(redis_err("publish allocation"))?;
        json.map(|j| serde_json::from_str(&j).map_err(|e| PoolError::Encode(format!("{}: {e}", self.keys.allocation)))).transpose()
    }

    pub async fn allocation(&self) -> Result<Option<AllocationRecord>, PoolError> {
        let json: Option<String> = redis::cmd("GET").arg(&self.keys.allocation).query_async(&mut self.conn.clone()).await.map_err(redis_err("read allocation"))?;
        json.map(|j| serde_json::from_str(&j).map_err(|e| PoolError::Encode(format!("{}: {e}", self.keys.allocation)))).transpose()
    }

    pub async fn assign(&self, worker_id: &str, mode: Mode) -> Result<(), PoolError> {
        let record = AssignmentRecord { worker_id: worker_id.to_string(), assigned_mode: mode.as_str().to_string(), last_updated: now_iso() };
        let json = serde_json::to_string(&record).map_err(|e| PoolError::Encode(e.to_string()))?;
        let _: () = redis::cmd("HSET").arg(&self.keys.assignments).arg(worker_id).arg(json).query_async(&mut self.conn.clone()).await.map_err(redis_err("assign worker"))?;
        Ok(())
    }

    pub async fn unassign(&self, worker_id: &str) -> Result<(), PoolError> {
        let _: () = redis::cmd("HDEL").arg(&self.keys.assignments).arg(worker_id).query_async(&mut self.conn.clone()).await.map_err(redis_err("unassign worker"))?;
        Ok(())
    }
}
