//! The OCR pool (docs/design.md §1, §6): `OCR_WORKER_POOL_SIZE` generic OCR workers, each in `index` or
//! `acte` mode, split between the two by a pool manager in proportion to the waiting work.
//!
//! - [`target_split`] / [`plan_moves`]: the split for given queue counts and the fewest workers
//!   to move (idle first); pure functions.
//! - [`PoolManager`]: `worker_pool:allocation`, `worker_pool:assignments` and the rebalancer
//!   lock in Redis (one rebalancer per pool key at a time).
//! - [`start`]: builds the shared services, prints the checklist's start-up lines (`✅ All
//!   managers initialized` once Redis answered), starts the workers (ids `ocr-worker-<n>-<8 hex>`,
//!   unique per process, each holding the capacity lease of its mode), the rebalancer and the 60 s
//!   status block, all under one [`registre_runtime::Shutdown`].

mod manager;
mod run;
mod split;
mod worker;

pub use manager::PoolManager;
pub use run::{run, served_environments, start, start_with, start_with_engine, worker_ids, PoolHandle, PoolServices};
pub use split::{plan_moves, target_split, Mode, PlannedWorker, Split};
pub use worker::{OcrActivity, WorkerSlot};

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("Redis {operation} failed: {source}")]
    Redis {
        operation: &'static str,
        #[source]
        source: redis::RedisError,
    },
    #[error("pool record could not be encoded or decoded: {0}")]
    Encode(String),
    /// A configuration-class error found while setting the pool up (no environment left after
    /// OCR_PROD / OCR_STAGING / OCR_DEV, an unusable STORAGE_URL or REDIS_URL, ...): exit 2.
    #[error("{0}")]
    Config(String),
}

impl registre_runtime::BinaryError for PoolError {
    /// 2 for configuration errors, as for every other bad configuration; else 1.
    fn exit_code(&self) -> u8 {
        match self {
            PoolError::Config(_) => 2,
            _ => 1,
        }
    }
}
