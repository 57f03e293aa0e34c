//! Registre workers (docs/design.md §1, §4, §7, §9, §11): each worker holds a `registre` capacity lease
//! (3 vCPU / 1 GB by default), claims `extraction_queue` rows (status 1), fetches the document as
//! a PDF, uploads it to object storage and moves the row on (status 3, or 5 for plan_cadastraux).
//!
//! - [`run`]: the whole `registre-workers` process (banner, capacity, workers, status block,
//!   graceful shutdown);
//! - [`Services`] + [`start_workers`]: the same workers on services built once and shared (one
//!   Redis connection, one [`CapacityManager`], one [`MultiQueue`], one [`Storage`]), which is how
//!   start-all-workers runs them beside the OCR pool in one process;
//! - [`spawn_status_reporter`]: the status block every REGISTRE_STATUS_INTERVAL_MS.
//!
//! Log lines, statuses and error messages are described in docs/registre-workers.md.

pub mod accounts;
pub mod board;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use registre_capacity::{CapacityManager, CapacitySettings, CapacityStatus, WorkerType};
use registre_config::{Config, RegistreConfig, WorkerCost};
use registre_fetch::{AccountProvider, FetchError, Fetcher};
use registre_queue::{MultiQueue, QueueError};
use registre_runtime::{RedisConnectError, Shutdown};
use registre_storage::{Storage, StorageError};
use tokio_util::sync::CancellationToken;

pub use board::{Board, WorkerState, WorkerView};
pub use worker::{request_for, JobError};

/// Browser crashes one row may cause before it ends in 4 (Erreur) with "the browser crashed N
/// times on this document". A crash counts no attempt (it usually says nothing about the
/// document), but a document that kills the browser every time must not loop forever; 3 leaves
/// room for the unrelated crash or two (docs/registre-workers.md).
pub const MAX_BROWSER_CRASHES: i32 = 3;

pub use registre_runtime::RULE;

/// Why the registre workers could not start. Display is the one line the binary prints.
#[derive(Debug, thiserror::Error)]
pub enum RegistreError {
    #[error(transparent)]
    Redis(#[from] RedisConnectError),
    #[error("queue set-up failed: {0}")]
    Queue(#[from] QueueError),
    #[error("storage set-up failed: {0}")]
    Storage(#[from] StorageError),
    #[error("fetcher set-up failed: {0}")]
    Fetcher(#[from] FetchError),
}

impl registre_runtime::BinaryError for RegistreError {
    /// 2 for configuration-class errors (an unreadable REGISTRE_SITE_CONFIG or another fetcher
    /// set-up mistake, an unusable STORAGE_URL or REDIS_URL), as start-all-workers does; else 1.
    fn exit_code(&self) -> u8 {
        match self {
            RegistreError::Fetcher(_) | RegistreError::Storage(_) | RegistreError::Redis(_) => 2,
            RegistreError::Queue(_) => 1,
        }
    }
}

/// Builds one fetcher; called once per worker when it starts (a registry fetcher holds one
/// browser and one account, so workers do not share it).
pub type FetcherFactory = Arc<dyn Fn() -> Result<Arc<dyn Fetcher>, FetchError> + Send + Sync>;

/// What the workers share. Cheap to clone (every field is shared).
#[derive(Clone)]
pub struct Services {
    pub capacity: CapacityManager,
    pub queue: Arc<MultiQueue>,
    pub storage: Storage,
    pub fetchers: FetcherFactory,
    /// What every worker of this process is doing (read by the status block).
    pub board: Arc<Board>,
}

impl Services {
    /// The queue of every configured environment, the storage STORAGE_URL names and the fetcher
    /// REGISTRE_FETCHER selects, around an already-built capacity manager. Nothing remote is
    /// contacted; configuration mistakes (a fetcher missing its folder or template) are refused here.
    pub fn build(
        config: &Config,
        capacity: CapacityManager,
        accounts: Arc<dyn AccountProvider>,
    ) -> Result<Services, RegistreError> {
        // One pool per environment for the whole process: start-all-workers hands this queue to the
        // OCR pool too, so it is sized for every user (QUEUE_PG_POOL_SIZE, by default
        // 2 × (WORKER_COUNT + OCR_WORKER_POOL_SIZE) + 2).
        let queue = Arc::new(MultiQueue::connect(&config.environments, &config.queue, config.queue.pg_pool_size)?);
        let storage = Storage::from_config(&config.storage)?;
        let fetchers = fetcher_factory(config.registre.clone(), accounts);
        // Refuse a fetcher that cannot be built now rather than in every worker later.
        let probe = fetchers()?;
        drop(probe);
        Ok(Services { capacity, queue, storage, fetchers, board: Arc::new(Board::new()) })
    }
}

/// A factory of the fetcher REGISTRE_FETCHER selects.
pub fn fetcher_factory(config: RegistreConfig, accounts: Arc<dyn AccountProvider>) -> FetcherFactory {
    Arc::new(move || registre_fetch::from_config(&config, accounts.clone()))
}

/// The knobs of the workers, from [`RegistreConfig`].
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSettings {
    /// WORKER_COUNT.
    pub count: u32,
    /// WORKER_ID: ids become `<WORKER_ID>-<n>` instead of `registre-worker-<n>-<8 hex>`.
    pub id_prefix: Option<String>,
    pub extraction_timeout: Duration,
    pub shutdown_grace: Duration,
    pub status_interval: Duration,
}

impl WorkerSettings {
    pub fn from_config(config: &RegistreConfig) -> WorkerSettings {
        WorkerSettings {
            count: config.worker_count,
            id_prefix: config.worker_id.clone(),
            extraction_timeout: config.extraction_timeout,
            shutdown_grace: config.shutdown_grace,
            status_interval: config.status_interval,
        }
    }

    /// `registre-worker-<n>-<hex>` (one random 8-hex suffix per process), or `<WORKER_ID>-<n>`.
    pub fn worker_ids(&self) -> Vec<String> {
        let suffix: String = uuid::Uuid::new_v4().simple().to_string().chars().take(8).collect();
        (1..=self.count)
            .map(|n| match &self.id_prefix {
                Some(prefix) => format!("{prefix}-{n}"),
                None => format!("registre-worker-{n}-{suffix}"),
            })
            .collect()
    }
}

/// How many workers of `cost` fit in what `status` leaves free (at most `wanted`).
pub fn workers_that_fit(status: &CapacityStatus, cost: WorkerCost, wanted: u32) -> u32 {
    let free_cpu = status.usable_cpu.saturating_sub(status.cpu_allocated).0;
    let free_ram = status.usable_ram.saturating_sub(status.ram_allocated).0;
    let by_cpu = free_cpu.checked_div(cost.cpu.0).unwrap_or(u64::MAX);
    let by_ram = free_ram.checked_div(cost.ram.0).unwrap_or(u64::MAX);
    u32::try_from(by_cpu.min(by_ram).min(wanted as u64)).unwrap_or(wanted)
}

/// Reads the capacity status, retrying with backoff while Redis does not answer (logged);
/// None if the shutdown fired first.
pub async fn capacity_status(capacity: &CapacityManager, cancel: &CancellationToken) -> Option<CapacityStatus> {
    capacity.status_once_reachable(cancel, "⚠️ capacity manager cannot read Redis").await
}

/// The workers started by [`start_workers`]. They hold their leases but claim nothing until
/// [`RegistreWorkers::begin`] (or until this value is dropped), so the caller can finish its
/// start-up banner before the first job's log lines.
pub struct RegistreWorkers {
    pub ids: Vec<String>,
    /// How many had a lease when `start_workers` returned; the others wait for capacity.
    pub started: u32,
    pub board: Arc<Board>,
    go: CancellationToken,
    _go_on_drop: tokio_util::sync::DropGuard,
}

impl RegistreWorkers {
    /// Lets the workers start claiming jobs.
    pub fn begin(&self) {
        self.go.cancel();
    }
}

/// Starts `settings.count` workers on `services`, each on a task of `shutdown`. Logs
/// `✅ Sufficient capacity for N worker(s)` when all fit (or how many fit and that the rest wait),
/// then `✅ Started <id>` for each worker that got its lease; returns once those have started.
/// Workers that did not fit wait for capacity (logging why, with the numbers) and start when it
/// frees. Every worker stops on the shutdown token, finishing or releasing its job, then
/// releasing its lease; [`Shutdown::wait`] waits for them.
pub async fn start_workers(services: &Services, settings: &WorkerSettings, shutdown: &Shutdown) -> RegistreWorkers {
    let ids = settings.worker_ids();
    let board = services.board.clone();
    let settings = Arc::new(settings.clone());
    let token = shutdown.token();
    let go = CancellationToken::new();
    let cost = services.capacity.settings().cost(WorkerType::Registre);
    for id in &ids {
        board.register(id, WorkerState::WaitingForCapacity);
    }
    if let Some(status) = capacity_status(&services.capacity, &token).await {
        let fit = workers_that_fit(&status, cost, settings.count);
        if fit >= settings.count {
            tracing::info!("✅ Sufficient capacity for {} worker(s)", settings.count);
        } else {
            tracing::warn!(
                "⚠️ Capacity for {fit} of {} worker(s): {} of {} vCPU and {} of {} GB allocated, each worker needs {} vCPU / {} GB; the other {} wait for capacity",
                settings.count,
                status.cpu_allocated,
                status.usable_cpu,
                status.ram_allocated,
                status.usable_ram,
                cost.cpu,
                cost.ram,
                settings.count - fit
            );
        }
    }
    let mut started = 0;
    for id in &ids {
        if token.is_cancelled() {
            break;
        }
        let worker = worker::Worker {
            id: id.clone(),
            services: services.clone(),
            settings: settings.clone(),
            stop: token.clone(),
            go: go.clone(),
        };
        match services.capacity.try_lease(id, WorkerType::Registre).await {
            Ok(Ok(lease)) => {
                started += 1;
                board.set_state(id, WorkerState::Idle);
                tracing::info!("✅ Started {id}");
                shutdown.spawn(worker.run(lease));
            }
            Ok(Err(shortfall)) => {
                tracing::warn!(worker = %id, "⏳ {id} waits for capacity: {shortfall}; it starts when capacity frees");
                shutdown.spawn(wait_then_run(worker));
            }
            Err(e) => {
                tracing::warn!(worker = %id, "⏳ {id} could not check capacity ({e}): retrying");
                shutdown.spawn(wait_then_run(worker));
            }
        }
    }
    RegistreWorkers { ids, started, board, go: go.clone(), _go_on_drop: go.drop_guard() }
}

async fn wait_then_run(worker: worker::Worker) {
    let Some(lease) = worker.services.capacity.wait_for_lease(&worker.id, WorkerType::Registre, &worker.stop).await else {
        worker.services.board.set_state(&worker.id, WorkerState::Stopped { reason: "shutdown before capacity freed".into() });
        return;
    };
    worker.services.board.set_state(&worker.id, WorkerState::Idle);
    tracing::info!("✅ Started {} (capacity freed)", worker.id);
    worker.run(lease).await;
}

/// Logs the status block every `interval` until the shutdown: per worker its state and counters,
/// the totals, and the server's capacity (`server:cpu:allocated` / usable, RAM likewise).
/// With SERVER_ID set the header names the server (`📊 REGISTRE WORKERS STATUS (server vps-2)`),
/// so the logs of several servers read apart.
pub fn spawn_status_reporter(services: &Services, interval: Duration, shutdown: &Shutdown, server_id: Option<&str>) {
    let header = match server_id {
        Some(id) => format!("📊 REGISTRE WORKERS STATUS (server {id})"),
        None => "📊 REGISTRE WORKERS STATUS".to_string(),
    };
    let board = services.board.clone();
    let capacity = services.capacity.clone();
    let token = shutdown.token();
    shutdown.spawn(async move {
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            let status = board::read_capacity(&capacity).await;
            tracing::info!("{RULE}");
            tracing::info!("{header}");
            for line in board.status_lines(status.as_ref()) {
                tracing::info!("{line}");
            }
            tracing::info!("{}", registre_telemetry::host::status_line(&registre_telemetry::host::usage()));
            tracing::info!("{RULE}");
        }
    });
}

/// What [`start`] brought up: the shared services, the settings, and the workers, which claim
/// nothing until `workers.begin()`.
pub struct Started {
    pub services: Services,
    pub settings: WorkerSettings,
    pub workers: RegistreWorkers,
}

/// The registre half of a process, on a capacity manager the caller built on its Redis
/// connection: the checklist's banner up to `✅ REGISTRE WORKERS STARTED SUCCESSFULLY`, the
/// WORKER_COUNT workers, and the status block. `None` if the shutdown fired before Redis answered.
/// Shared by `registre-workers` ([`run`]) and start-all-workers.
pub async fn start(config: &Config, capacity: CapacityManager, shutdown: &Shutdown) -> Result<Option<Started>, RegistreError> {
    tracing::info!("{RULE}");
    tracing::info!("🚀 REGISTRE EXTRACTOR WORKERS STARTING");
    tracing::info!("{RULE}");
    tracing::info!("💾 Initializing server capacity manager...");
    if capacity_status(&capacity, &shutdown.token()).await.is_none() {
        tracing::info!("🛑 stopped before Redis answered");
        return Ok(None);
    }
    tracing::info!("✅ Capacity manager initialized");
    let services = Services::build(config, capacity, accounts_for(config)?)?;
    let settings = WorkerSettings::from_config(&config.registre);
    let workers = start_workers(&services, &settings, shutdown).await;
    if !shutdown.is_triggered() {
        tracing::info!("{RULE}");
        tracing::info!("✅ REGISTRE WORKERS STARTED SUCCESSFULLY");
        tracing::info!("{RULE}");
        let envs: Vec<&str> = services.queue.envs().iter().map(|e| e.as_str()).collect();
        let fetcher = match config.registre.fetcher {
            registre_config::FetcherKind::Registry => "registry",
            registre_config::FetcherKind::Http => "http",
            registre_config::FetcherKind::Directory => "directory",
        };
        tracing::info!("📦 fetcher {fetcher} · storage {} · queues {}", services.storage.describe(), envs.join(" → "));
    }
    spawn_status_reporter(&services, settings.status_interval, shutdown, config.server.id.as_deref());
    Ok(Some(Started { services, settings, workers }))
}

/// The `registre-workers` process: [`start`] on its own Redis connection, then on SIGTERM/SIGINT
/// (the `shutdown` token) a graceful stop. Returns once every worker has finished or released
/// its job and released its lease.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), RegistreError> {
    let redis = registre_runtime::redis_connection(&config.redis_url)?;
    let capacity = CapacityManager::new(redis, CapacitySettings::from_config(&config));
    let Some(started) = start(&config, capacity, &shutdown).await? else {
        return Ok(());
    };
    started.workers.begin();

    shutdown.triggered().await;
    // Grace for the current jobs, plus time to record their outcome and release the leases.
    let limit = started.settings.shutdown_grace + Duration::from_secs(10);
    if shutdown.wait(limit).await {
        tracing::info!("👋 registre workers stopped ({} worker(s), leases released)", started.workers.ids.len());
    } else {
        tracing::warn!("👋 registre workers did not all stop within {} ms: exiting anyway (their leases expire by themselves)", limit.as_millis());
    }
    Ok(())
}

/// The registry accounts the `registry` fetcher logs in with: `worker_accounts` of the first
/// configured environment, through its queue backend (Postgres or Supabase REST alike:
/// [`accounts::QueueAccounts`]).
pub fn accounts_for(config: &Config) -> Result<Arc<dyn AccountProvider>, RegistreError> {
    match accounts::QueueAccounts::from_config(config)? {
        Some(accounts) => Ok(Arc::new(accounts)),
        None => Ok(Arc::new(registre_fetch::InMemoryAccounts::default())),
    }
}
