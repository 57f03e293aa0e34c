//! start-all-workers: the registre workers and the OCR pool in ONE process (PM2 app
//! `registre-all-workers`, the checklist's Option 1), on one runtime, one Redis connection, one
//! capacity manager, one storage client, one queue where both serve the same environments, and
//! one shutdown.
//!
//! - [`CapacityPlan`]: what WORKER_COUNT registre + OCR_WORKER_POOL_SIZE OCR workers need against
//!   what the server has, printed at start; a plan that can never fit is refused
//!   ([`AllError::PlanDoesNotFit`], exit 2 like any configuration error);
//! - [`run`]: plan, both banners, both sets of workers, then the graceful stop. If the pool half
//!   cannot start, the registre workers (which have claimed nothing yet) are stopped and their
//!   capacity leases released before the process exits with the pool's error.

use std::time::Duration;

use registre_capacity::{CapacityManager, CapacitySettings};
use registre_config::{Config, Milli};
use registre_runtime::Shutdown;

#[derive(Debug, thiserror::Error)]
pub enum AllError {
    #[error("{0}")]
    PlanDoesNotFit(String),
    #[error("registre workers: {0}")]
    Registre(#[from] registre_extraction::RegistreError),
    #[error("OCR pool: {0}")]
    Pool(#[from] registre_pool::PoolError),
    #[error(transparent)]
    Redis(#[from] registre_runtime::RedisConnectError),
}

impl registre_runtime::BinaryError for AllError {
    /// 2 for configuration-class errors (a plan that cannot fit, an unreadable
    /// REGISTRE_SITE_CONFIG or another fetcher set-up mistake, an unusable STORAGE_URL or
    /// REDIS_URL, OCR_* leaving the pool no environment), else 1.
    fn exit_code(&self) -> u8 {
        match self {
            AllError::PlanDoesNotFit(_) | AllError::Redis(_) => 2,
            AllError::Registre(e) => e.exit_code(),
            AllError::Pool(e) => e.exit_code(),
        }
    }
}

/// Capacity needed by this process's workers at start (OCR split as on an empty queue:
/// ⌊n/2⌋ index, ⌈n/2⌉ acte) against the server's usable capacity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapacityPlan {
    pub registre_workers: u32,
    pub index_workers: u32,
    pub acte_workers: u32,
    pub cpu_needed: Milli,
    pub ram_needed: Milli,
    /// With every OCR worker in index mode (the costlier mode), which rebalancing may reach.
    pub cpu_needed_all_index: Milli,
    pub ram_needed_all_index: Milli,
    pub usable_cpu: Milli,
    pub usable_ram: Milli,
}

impl CapacityPlan {
    pub fn for_config(config: &Config) -> CapacityPlan {
        let c = &config.capacity;
        let pool = &config.ocr_pool;
        let split = registre_pool::target_split(pool.pool_size, pool.min_index_workers, pool.min_acte_workers, 0, 0);
        let registre = config.registre.worker_count as u64;
        let cpu_needed = c.registre.cpu * registre + c.index_ocr.cpu * split.index as u64 + c.acte_ocr.cpu * split.acte as u64;
        let ram_needed = c.registre.ram * registre + c.index_ocr.ram * split.index as u64 + c.acte_ocr.ram * split.acte as u64;
        let all_index = pool.pool_size as u64 - pool.min_acte_workers as u64;
        let cpu_needed_all_index = c.registre.cpu * registre + c.index_ocr.cpu * all_index + c.acte_ocr.cpu * pool.min_acte_workers as u64;
        let ram_needed_all_index = c.registre.ram * registre + c.index_ocr.ram * all_index + c.acte_ocr.ram * pool.min_acte_workers as u64;
        CapacityPlan {
            registre_workers: config.registre.worker_count,
            index_workers: split.index,
            acte_workers: split.acte,
            cpu_needed,
            ram_needed,
            cpu_needed_all_index,
            ram_needed_all_index,
            usable_cpu: config.server.usable_cpu(),
            usable_ram: config.server.usable_ram(),
        }
    }

    pub fn fits(&self) -> bool {
        self.cpu_needed <= self.usable_cpu && self.ram_needed <= self.usable_ram
    }

    /// The lines printed at start.
    pub fn lines(&self) -> Vec<String> {
        vec![
            format!(
                "📐 Capacity plan: {} registre + {} OCR worker(s) ({} index, {} acte)",
                self.registre_workers,
                self.index_workers + self.acte_workers,
                self.index_workers,
                self.acte_workers
            ),
            format!("   needed {} vCPU of {} usable, {} GB of {} usable", self.cpu_needed, self.usable_cpu, self.ram_needed, self.usable_ram),
            format!(
                "   with every OCR worker but the acte minimum in index mode: {} vCPU, {} GB",
                self.cpu_needed_all_index, self.ram_needed_all_index
            ),
        ]
    }
}

/// The whole `start-all-workers` process. Returns after a graceful stop.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), AllError> {
    let plan = CapacityPlan::for_config(&config);
    for line in plan.lines() {
        tracing::info!("{line}");
    }
    if !plan.fits() {
        return Err(AllError::PlanDoesNotFit(format!(
            "WORKER_COUNT ({}) registre + OCR_WORKER_POOL_SIZE ({}) OCR workers need {} vCPU / {} GB but this server has {} vCPU / {} GB usable: lower WORKER_COUNT or OCR_WORKER_POOL_SIZE, or raise SERVER_MAX_CPU / SERVER_MAX_RAM",
            plan.registre_workers,
            plan.index_workers + plan.acte_workers,
            plan.cpu_needed,
            plan.ram_needed,
            plan.usable_cpu,
            plan.usable_ram
        )));
    }
    if plan.cpu_needed_all_index > plan.usable_cpu || plan.ram_needed_all_index > plan.usable_ram {
        tracing::warn!("⚠️ if rebalancing moves every OCR worker to index mode the plan exceeds the server: a switching worker waits for capacity");
    }

    let redis = registre_runtime::redis_connection(&config.redis_url)?;
    let capacity = CapacityManager::new(redis.clone(), CapacitySettings::from_config(&config));
    let Some(registre) = registre_extraction::start(&config, capacity.clone(), &shutdown).await? else {
        return Ok(());
    };
    let storage = registre.services.storage.clone();
    let pool = registre_pool::start_with(&config, redis, capacity, storage, Some(registre.services.queue.clone()), &shutdown).await;
    if let Err(e) = pool {
        // The registre workers hold capacity leases but have claimed nothing yet (they wait for
        // `begin`): stop them and give their leases back before exiting, rather than leaving
        // the leases to expire while PM2 restarts the process.
        tracing::error!("OCR pool could not start ({e}): stopping the registre workers");
        shutdown.trigger();
        let limit = registre.settings.shutdown_grace + Duration::from_secs(10);
        if shutdown.wait(limit).await {
            tracing::info!("👋 registre workers stopped, leases released");
        } else {
            tracing::warn!("👋 registre workers did not all stop within {} ms (their leases expire by themselves)", limit.as_millis());
        }
        return Err(AllError::Pool(e));
    }
    // The registre workers claim only once both banners are out.
    registre.workers.begin();

    shutdown.triggered().await;
    let limit = registre.settings.shutdown_grace.max(config.ocr_pool.shutdown_grace) + Duration::from_secs(10);
    if shutdown.wait(limit).await {
        tracing::info!("👋 all workers stopped, leases released");
    } else {
        tracing::warn!("👋 some workers did not stop within {} ms: exiting anyway (their leases expire by themselves)", limit.as_millis());
    }
    Ok(())
}
