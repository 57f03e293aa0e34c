//! Start-up of the OCR pool: shared services, the checklist's start-up lines, the workers, the
//! rebalancer and the status block, every task under the one shutdown of the process.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use registre_runtime::RedisConn;
use registre_capacity::{CapacityManager, CapacitySettings};
use registre_config::{Config, Environment};
use registre_domain::keys::PoolKeys;
use registre_domain::pool::QueueCounts;
use registre_ocr::{engine_from_config, OcrEngine};
use registre_queue::MultiQueue;
use registre_ratelimit::{RateLimitSettings, RateLimiter};
use registre_runtime::{Backoff, Shutdown};
use registre_storage::Storage;
use tokio::sync::watch;

use crate::worker::{run_worker, Worker, WorkerSlot, OcrActivity};
use crate::{plan_moves, target_split, Mode, PoolError, PoolManager, PlannedWorker};

use registre_runtime::RULE;

/// What every OCR worker of the process shares.
pub struct PoolServices {
    pub capacity: CapacityManager,
    pub queue: Arc<MultiQueue>,
    pub storage: Storage,
    pub engine: Arc<dyn OcrEngine>,
    pub limiter: RateLimiter,
    pub manager: PoolManager,
    pub shutdown_grace: Duration,
}

/// The running pool: its workers, for callers that want to watch them.
pub struct PoolHandle {
    pub slots: Arc<Vec<WorkerSlot>>,
    pub services: Arc<PoolServices>,
}

/// The `ocr-pool` process: starts the pool, then on the shutdown signal waits until every worker
/// has finished (within OCR_SHUTDOWN_GRACE_MS) or released its job and released its lease.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), PoolError> {
    if start(&config, &shutdown).await?.is_none() {
        tracing::info!("🛑 stopped before Redis answered");
        return Ok(());
    }
    shutdown.triggered().await;
    let limit = config.ocr_pool.shutdown_grace + Duration::from_secs(5);
    if shutdown.wait(limit).await {
        tracing::info!("👋 OCR pool stopped, leases released");
    } else {
        tracing::warn!("👋 some OCR workers did not stop within {} s: exiting anyway (their leases expire by themselves)", limit.as_secs());
    }
    Ok(())
}

/// Starts the pool with its own Redis connection and storage. `None` if the shutdown fired
/// before Redis answered.
pub async fn start(config: &Config, shutdown: &Shutdown) -> Result<Option<PoolHandle>, PoolError> {
    served_environments(config)?;
    let redis = registre_runtime::redis_connection(&config.redis_url).map_err(|e| PoolError::Config(e.to_string()))?;
    let capacity = CapacityManager::new(redis.clone(), CapacitySettings::from_config(config));
    let storage = Storage::from_config(&config.storage).map_err(|e| PoolError::Config(format!("STORAGE_URL: {e}")))?;
    start_with(config, redis, capacity, storage, None, shutdown).await
}

/// The environments the pool serves (OCR_PROD / OCR_STAGING / OCR_DEV applied to the configured
/// ones); a configuration error when none is left.
pub fn served_environments(config: &Config) -> Result<Vec<Environment>, PoolError> {
    let served: Vec<Environment> = config.environments.iter().filter(|e| config.ocr_pool.serves(e.name)).cloned().collect();
    if served.is_empty() {
        let configured: Vec<&str> = config.environments.iter().map(|e| e.name.as_str()).collect();
        return Err(PoolError::Config(format!(
            "OCR_PROD, OCR_STAGING and OCR_DEV leave no configured environment for the OCR pool (configured: {}): set OCR_{}=true",
            configured.join(", "),
            configured.first().map(|n| n.to_uppercase()).unwrap_or_else(|| "PROD".into())
        )));
    }
    Ok(served)
}

/// Worker ids as they appear in Redis (capacity leases, assignments) and in the queue's
/// `ocr_worker_id`: `ocr-worker-<n>-<8 hex>`, one random suffix per process, so two pool
/// processes on one server never share an id. Logs name a worker by its short name `ocr-worker-<n>`.
pub fn worker_ids(pool_size: u32) -> Vec<(String, String)> {
    let suffix: String = uuid::Uuid::new_v4().simple().to_string().chars().take(8).collect();
    (1..=pool_size).map(|n| (format!("ocr-worker-{n}"), format!("ocr-worker-{n}-{suffix}"))).collect()
}

/// Starts the pool on services shared with the rest of the process (start-all-workers). `queue`
/// is reused when it covers exactly the environments the pool serves (OCR_PROD / OCR_STAGING /
/// OCR_DEV); otherwise the pool opens its own over those environments. Prints
/// `✅ All managers initialized` only once Redis has answered (it waits, retrying with backoff
/// and saying so); `None` if the shutdown fired first.
pub async fn start_with(
    config: &Config,
    redis: RedisConn,
    capacity: CapacityManager,
    storage: Storage,
    queue: Option<Arc<MultiQueue>>,
    shutdown: &Shutdown,
) -> Result<Option<PoolHandle>, PoolError> {
    start_with_engine(config, redis, capacity, storage, queue, None, shutdown).await
}

/// [`start_with`] with a given OCR engine instead of the one OCR_ENGINE selects (the end-to-end
/// benchmark times the engine's own share of each document this way).
pub async fn start_with_engine(
    config: &Config,
    redis: RedisConn,
    capacity: CapacityManager,
    storage: Storage,
    queue: Option<Arc<MultiQueue>>,
    engine: Option<Arc<dyn OcrEngine>>,
    shutdown: &Shutdown,
) -> Result<Option<PoolHandle>, PoolError> {
    let pool = &config.ocr_pool;
    tracing::info!("{RULE}");
    tracing::info!("🚀 UNIFIED OCR WORKER POOL STARTING");
    tracing::info!("{RULE}");
    tracing::info!("📊 Initializing shared rate limiter...");
    let limiter = RateLimiter::new(redis.clone(), RateLimitSettings::from_config(&config.rate_limit)).map_err(|e| PoolError::Config(format!("rate limiter: {e}")))?;
    tracing::info!("💾 Initializing server capacity manager...");
    tracing::info!("🎯 Initializing worker pool manager...");
    // host:pid plus a random part: unique per process even across containers sharing pids.
    let owner = format!("{}:{}:{}", registre_runtime::host_name(), std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let manager = PoolManager::new(redis, PoolKeys::for_server(config.server.id.as_deref()), owner).with_part_ttl(rebalance_lock_ttl(config));
    let served = served_environments(config)?;
    let served_names: Vec<_> = served.iter().map(|e| e.name).collect();
    let queue = match queue {
        Some(shared) if shared.envs() == served_names => shared,
        _ => Arc::new(MultiQueue::connect(&served, &config.queue, config.queue.pg_pool_size).map_err(|e| PoolError::Config(e.to_string()))?),
    };
    let engine = match engine {
        Some(engine) => engine,
        None => engine_from_config(&config.ocr_engine, limiter.clone()).map_err(|e| PoolError::Config(e.to_string()))?,
    };
    if capacity.status_once_reachable(&shutdown.token(), "⏳ waiting for Redis before starting the OCR workers").await.is_none() {
        return Ok(None);
    }
    tracing::info!("✅ All managers initialized");

    let services = Arc::new(PoolServices { capacity, queue, storage, engine, limiter, manager, shutdown_grace: pool.shutdown_grace });

    // Initial split of this process's workers from what is waiting now (an empty queue gives
    // ⌊n/2⌋ index, ⌈n/2⌉ acte); the allocation key shows the sum over every live pool process.
    let counts = queue_counts(&services).await;
    let split = target_split(pool.pool_size, pool.min_index_workers, pool.min_acte_workers, counts.index, counts.acte);
    if let Err(e) = services.manager.publish_allocation(split, counts).await {
        tracing::warn!("could not publish the pool allocation: {e}");
    }

    let mut slots = Vec::new();
    for (n, (name, id)) in (1..=pool.pool_size).zip(worker_ids(pool.pool_size)) {
        let mode = if n <= split.index { Mode::Index } else { Mode::Acte };
        let (tx, rx) = watch::channel(mode);
        let state = Arc::new(OcrActivity::default());
        if let Err(e) = services.manager.assign(&id, mode).await {
            tracing::warn!("could not record the assignment of {name}: {e}");
        }
        let asked = std::time::Instant::now();
        let lease = match services.capacity.try_lease(&id, mode.worker_type()).await {
            Ok(Ok(lease)) => {
                // Granted at once: still one sample of registre_capacity_wait_seconds, so the
                // histogram counts every lease this pool took (a worker that had to wait records
                // its wait in wait_for_lease).
                registre_telemetry::capacity_wait(mode.worker_type().as_str(), asked.elapsed());
                tracing::info!("✅ Started {name} (mode: {mode})");
                tracing::debug!("{name} holds its capacity lease as {id}");
                Some(lease)
            }
            Ok(Err(shortfall)) => {
                tracing::warn!("⏳ {name} (mode: {mode}) waits for capacity: {shortfall}");
                None
            }
            Err(e) => {
                tracing::warn!("⏳ {name} (mode: {mode}) waits: capacity check failed ({e})");
                None
            }
        };
        let worker = Worker { services: services.clone(), name: name.clone(), id: id.clone(), state: state.clone(), stop: shutdown.token() };
        shutdown.spawn(run_worker(worker, rx, lease));
        slots.push(WorkerSlot { name, id, mode: tx, state });
    }
    let slots = Arc::new(slots);
    tracing::info!("{RULE}");
    tracing::info!("✅ WORKER POOL STARTED SUCCESSFULLY");
    tracing::info!("{RULE}");

    shutdown.spawn(rebalancer(config.clone(), services.clone(), slots.clone(), shutdown.clone()));
    let header = match config.server.id.as_deref() {
        Some(id) => format!("📊 OCR POOL STATUS (server {id})"),
        None => "📊 OCR POOL STATUS".to_string(),
    };
    shutdown.spawn(status_block(config.ocr_pool.status_interval, header, services.clone(), slots.clone(), shutdown.clone()));
    Ok(Some(PoolHandle { slots, services }))
}

/// Long enough to survive one missed rebalance; a crashed rebalancer's lock frees after it.
fn rebalance_lock_ttl(config: &Config) -> Duration {
    config.ocr_pool.rebalance_interval * 2 + Duration::from_secs(5)
}

async fn queue_counts(services: &PoolServices) -> QueueCounts {
    let waiting = services.queue.count_waiting().await;
    QueueCounts { index: waiting.get("index").copied().unwrap_or(0), acte: waiting.get("acte").copied().unwrap_or(0) }
}

/// Every OCR_REBALANCE_INTERVAL_MS: re-split THIS process's workers from the waiting counts,
/// tell the fewest of them to switch, and publish this process's part of the allocation (the
/// allocation key holds the sum over every live pool process of the pool key). Each round runs
/// under the rebalancer lock, taken for the round and released after it, so one pool process at a
/// time rebalances; a process never moves another process's workers.
async fn rebalancer(config: Config, services: Arc<PoolServices>, slots: Arc<Vec<WorkerSlot>>, shutdown: Shutdown) {
    let pool = &config.ocr_pool;
    let ttl = rebalance_lock_ttl(&config);
    let mut lock_wait = Backoff::new(Duration::from_millis(50), Duration::from_millis(500));
    let mut delay = pool.rebalance_interval;
    loop {
        tokio::select! {
            _ = shutdown.triggered() => break,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = pool.rebalance_interval;
        match services.manager.hold_lock(ttl).await {
            Ok(true) => lock_wait.reset(),
            Ok(false) => {
                // Another pool process of this key is in its round: ours comes right after.
                delay = lock_wait.next_delay();
                continue;
            }
            Err(e) => {
                tracing::warn!("rebalance skipped: {e}");
                continue;
            }
        }
        let counts = queue_counts(&services).await;
        let target = target_split(pool.pool_size, pool.min_index_workers, pool.min_acte_workers, counts.index, counts.acte);
        let views: Vec<PlannedWorker> = slots
            .iter()
            .map(|s| PlannedWorker { id: s.name.clone(), mode: *s.mode.borrow(), busy: s.state.busy.load(Ordering::SeqCst) })
            .collect();
        for (name, mode) in plan_moves(&views, target) {
            if let Some(slot) = slots.iter().find(|s| s.name == name) {
                let busy = slot.state.busy.load(Ordering::SeqCst);
                tracing::info!("🔄 Rebalance: {name} → {mode} mode{}", if busy { " (after its current job)" } else { "" });
                let _ = slot.mode.send(mode);
                if let Err(e) = services.manager.assign(&slot.id, mode).await {
                    tracing::warn!("could not record the assignment of {name}: {e}");
                }
            }
        }
        match services.manager.publish_allocation(target, counts).await {
            Ok(a) => tracing::debug!(index = a.index_workers, acte = a.acte_workers, "pool allocation published"),
            Err(e) => tracing::warn!("could not publish the pool allocation: {e}"),
        }
        if let Err(e) = services.manager.release_lock().await {
            tracing::debug!("rebalancer lock not released (it expires by itself): {e}");
        }
    }
    // This process's workers stop: the allocation goes back to the sum of the others.
    if let Err(e) = services.manager.withdraw_allocation().await {
        tracing::debug!("pool allocation part not withdrawn (it expires by itself): {e}");
    }
    let _ = services.manager.release_lock().await;
}

/// The status block of the checklist: allocation, API usage, capacity by worker type.
/// `header` names the server when SERVER_ID is set, so the logs of several servers read apart.
async fn status_block(every: Duration, header: String, services: Arc<PoolServices>, slots: Arc<Vec<WorkerSlot>>, shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = shutdown.triggered() => return,
            _ = tokio::time::sleep(every) => {}
        }
        tracing::info!("{RULE}");
        tracing::info!("{header}");
        match services.manager.allocation().await {
            Ok(Some(a)) => tracing::info!(
                "🎯 Allocation: {} index / {} acte of {} (waiting: {} index, {} acte; updated {})",
                a.index_workers, a.acte_workers, a.total_workers, a.queue.index, a.queue.acte, a.updated_at
            ),
            Ok(None) => tracing::info!("🎯 Allocation: not published yet"),
            Err(e) => tracing::warn!("🎯 Allocation unavailable: {e}"),
        }
        for slot in slots.iter() {
            tracing::info!(
                "   {} [{}] {} (done {}, failed {})",
                slot.name,
                *slot.mode.borrow(),
                slot.state.activity(),
                slot.state.done.load(Ordering::SeqCst),
                slot.state.failed.load(Ordering::SeqCst)
            );
        }
        match services.limiter.status().await {
            Ok(s) => tracing::info!(
                // The API's window as configured (the checklist's "60s window"); the counts also
                // hold the grants of the arrival margin, as the limiter does.
                "📈 API usage ({}s window): {} / {} requests, {} / {} tokens{}",
                s.window.saturating_sub(s.arrival_margin).as_secs(),
                s.requests_in_window,
                s.requests_per_window,
                s.tokens_in_window,
                s.tokens_per_window,
                s.cooldown_remaining.map(|c| format!(", cooling down for {} ms after a 429", c.as_millis())).unwrap_or_default()
            ),
            Err(e) => tracing::warn!("📈 API usage unavailable: {e}"),
        }
        match services.capacity.status().await {
            Ok(c) => {
                let mut by_type: BTreeMap<String, (u32, f64, f64)> = BTreeMap::new();
                for w in &c.workers {
                    let e = by_type.entry(w.kind.clone()).or_default();
                    e.0 += 1;
                    e.1 += w.cpu;
                    e.2 += w.ram;
                }
                tracing::info!("💾 Capacity: {} / {} vCPU, {} / {} GB", c.cpu_allocated, c.usable_cpu, c.ram_allocated, c.usable_ram);
                for (kind, (n, cpu, ram)) in by_type {
                    tracing::info!("   {kind}: {n} worker(s), {cpu} vCPU, {ram} GB");
                }
            }
            Err(e) => tracing::warn!("💾 Capacity unavailable: {e}"),
        }
        tracing::info!("{}", registre_telemetry::host::status_line(&registre_telemetry::host::usage()));
        tracing::info!("{RULE}");
    }
}
