//! The operations library (docs/design.md §12): every query and repair that registre-api, registre-monitor
//! and registrectl share, written once so the HTTP and CLI layers stay thin.
//!
//! - [`db`]: per environment (Postgres via sqlx): counts per status × source, oldest waiting age per
//!   stage, completions per minute over the last hour (kept per minute by [`completions`], so
//!   each call reads only the newest minutes), the jobs list with keyset pagination
//!   ([`Cursor`]), one row, enqueue (validated, [`NewExtraction`]), retry, cancel. Every change is
//!   one SQL function of crates/queue/functions/ops.sql (ops_enqueue, ops_retry, ops_cancel).
//! - [`live`]: from Redis: live workers (capacity leases `server:workers` / `server:{x}:workers`
//!   joined with the pool assignments), capacity per server, rate-limit usage of the current rolling
//!   window (crates/ratelimit's status script), the OCR pool allocation.
//! - [`overview()`]: both at once, every environment and Redis concurrently, the one view
//!   registre-api's dashboard and /metrics and registre-monitor's /metrics show; [`render_metrics`]
//!   writes it as Prometheus text. Here rather than in registre-api so the monitor uses them without
//!   depending on the API.
//!
//! Environments reached through Supabase REST only are listed but not queried here: every call on
//! them answers [`OpsError::RestUnsupported`] (set `<ENV>_DATABASE_URL` to operate on them).

pub mod completions;
pub mod cursor;
pub mod db;
pub mod index_rows;
pub mod live;
pub mod metrics;
pub mod overview;
pub mod validate;

use std::time::Duration;

use registre_config::{Backend, Config, EnvName};
use sqlx::postgres::{PgPool, PgPoolOptions};

pub use cursor::Cursor;
pub use db::{
    EnvOverview, ExtractionDetail, ExtractionRow, ListFilter, MinuteCount, OldestWaiting, Page, StatusCount,
};
pub use db::{BulkRetry, ChangedRow, Requeued, RETRY_BATCH, WRITE_STATEMENT_TIMEOUT};
pub use live::{CapacityView, LeaseRelease, LiveView, LiveWorker, PoolView, RateLimitView};
pub use metrics::render as render_metrics;
pub use overview::{overview, Overview};
pub use validate::{FieldError, NewExtraction, ValidExtraction};

/// Why an operation failed. Display is one line for an operator; never a secret.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("environment {0:?} is not configured here (configured: {1})")]
    UnknownEnvironment(String, String),
    /// The environment has only `<ENV>_SUPABASE_URL` + key: the operations read and repair with
    /// SQL (counts, keyset pages, the ops_* functions), which PostgREST does not offer as such.
    #[error(
        "{env} is reached through Supabase REST only: {what} needs a direct Postgres connection; set {var} \
         (the Supabase connection string, session pooler port 5432) for this environment"
    )]
    RestUnsupported { env: EnvName, what: &'static str, var: String },
    #[error("extraction_queue missing in {env}: run registrectl migrate")]
    NotMigrated { env: EnvName },
    #[error(transparent)]
    Database(registre_queue::DatabaseError),
    /// No COMMIT was sent within the client's bound: the transaction rolled back, nothing changed.
    #[error("{env}: {operation} did not answer within {seconds} s; nothing was changed")]
    Timeout { env: EnvName, operation: &'static str, seconds: u64 },
    /// The server's statement_timeout stopped the write: rolled back, nothing changed.
    #[error("{env}: {operation} did not finish within {seconds} s (statement_timeout); nothing was changed")]
    WriteTimedOut { env: EnvName, operation: &'static str, seconds: u64 },
    /// The COMMIT was sent but its answer never came: the change may or may not have happened.
    #[error("{env}: {operation}: outcome unknown ({detail}): {check}")]
    OutcomeUnknown { env: EnvName, operation: &'static str, detail: String, check: String },
    /// A bulk operation stopped at a batch; the batches before it are committed.
    #[error("{retried} row(s) retried in {batches} committed batch(es) before it stopped; {source}")]
    BulkStopped {
        retried: u64,
        batches: u32,
        #[source]
        source: Box<OpsError>,
    },
    #[error("Redis: {operation} failed: {detail}")]
    Redis { operation: &'static str, detail: String },
    #[error("the cursor is not one this API handed out")]
    BadCursor,
    #[error("invalid request: {}", .0.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    #[error("no extraction {id} in {env}")]
    NotFound { env: EnvName, id: uuid::Uuid },
    #[error("no capacity lease of worker {worker_id} in Redis (see registrectl status for the live workers)")]
    LeaseNotFound { worker_id: String },
    #[error("worker {worker_id} holds leases on several servers ({}): name one with --server", servers.join(", "))]
    LeaseAmbiguous { worker_id: String, servers: Vec<String> },
    #[error(
        "the lease of worker {worker_id} is still being renewed (its expiry moved within {watched_ms} ms): \
         its process is alive; stop it, or use --force"
    )]
    LeaseRenewed { worker_id: String, watched_ms: u64 },
    /// The row is in a status the operation does not apply to.
    #[error("{reason}")]
    Conflict { status_id: i32, reason: String },
}

/// One environment as the operations see it.
pub struct EnvHandle {
    pub name: EnvName,
    /// The pool of the changes (enqueue, retry, cancel, repairs); None for a REST-only environment.
    pool: Option<PgPool>,
    /// The pool of the reads (overview, list, one row, ping): separate, so however many reads are
    /// waiting, a change never waits for a connection a read holds (docs/operations.md).
    reads: Option<PgPool>,
}

impl std::fmt::Debug for EnvHandle {
    // The pool's options hold the password: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvHandle").field("name", &self.name).field("direct", &self.pool.is_some()).finish()
    }
}

/// Connections of an environment's read pool (overview, list, detail, ping).
pub const READ_CONNECTIONS: u32 = 3;
/// Connections kept for the changes, which reads never take.
pub const WRITE_CONNECTIONS: u32 = 2;

/// Longest time of one operations query (the API answers 503/partial data instead of hanging).
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Every environment and Redis, ready to be queried. Cheap to share behind an Arc.
pub struct Ops {
    envs: Vec<EnvHandle>,
    live: live::Live,
    /// Completions per minute already counted, so each overview reads only the newest minutes.
    completions: completions::CompletionCache,
}

impl std::fmt::Debug for Ops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ops").field("envs", &self.envs).finish_non_exhaustive()
    }
}

impl Ops {
    /// Pools connect lazily: building never fails because a database or Redis is down; the calls do
    /// (and are retried by the caller's next request or round).
    pub fn from_config(config: &Config) -> Result<Ops, String> {
        let mut envs = Vec::new();
        for env in &config.environments {
            let pool = match &env.backend {
                Backend::Database { url } => {
                    let options = registre_queue::connect_options(url)
                        .map_err(|_| format!("{}: the database URL {} is not a usable Postgres URL", env.name, url.redacted()))?;
                    let pool = |max: u32| {
                        PgPoolOptions::new()
                            .max_connections(max)
                            .min_connections(0)
                            .acquire_timeout(Duration::from_secs(5))
                            .connect_lazy_with(options.clone())
                    };
                    Some((pool(WRITE_CONNECTIONS), pool(READ_CONNECTIONS)))
                }
                Backend::Supabase { .. } => None,
            };
            let (pool, reads) = pool.unzip();
            envs.push(EnvHandle { name: env.name, pool, reads });
        }
        let live = live::Live::from_config(config).map_err(|e| e.to_string())?;
        Ok(Ops { envs, live, completions: Default::default() })
    }

    /// For tests and benchmarks: explicit pools (one per environment, reads and changes share it)
    /// and a Redis view.
    pub fn new(envs: Vec<(EnvName, Option<PgPool>)>, live: live::Live) -> Ops {
        Ops {
            envs: envs.into_iter().map(|(name, pool)| EnvHandle { name, reads: pool.clone(), pool }).collect(),
            live,
            completions: Default::default(),
        }
    }

    pub fn environments(&self) -> Vec<EnvName> {
        self.envs.iter().map(|e| e.name).collect()
    }

    pub fn live(&self) -> &live::Live {
        &self.live
    }

    /// The environment an operator named (`prod`, `staging`, `dev`), if configured here.
    pub fn env(&self, name: &str) -> Result<EnvName, OpsError> {
        let configured = || self.envs.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", ");
        self.envs
            .iter()
            .find(|e| e.name.as_str() == name.trim())
            .map(|e| e.name)
            .ok_or_else(|| {
                let shown: String = name.chars().take(40).collect();
                OpsError::UnknownEnvironment(shown, configured())
            })
    }

    /// The direct pool of an environment's changes, or why there is none.
    fn pool(&self, env: EnvName, what: &'static str) -> Result<&PgPool, OpsError> {
        self.handle(env)?.pool.as_ref().ok_or_else(|| rest_only(env, what))
    }

    /// The direct pool of an environment's reads, or why there is none.
    fn read_pool(&self, env: EnvName, what: &'static str) -> Result<&PgPool, OpsError> {
        self.handle(env)?.reads.as_ref().ok_or_else(|| rest_only(env, what))
    }

    fn handle(&self, env: EnvName) -> Result<&EnvHandle, OpsError> {
        self.envs.iter().find(|e| e.name == env).ok_or_else(|| OpsError::UnknownEnvironment(env.to_string(), String::new()))
    }
}

fn rest_only(env: EnvName, what: &'static str) -> OpsError {
    OpsError::RestUnsupported { env, what, var: format!("{}_DATABASE_URL", env.as_str().to_ascii_uppercase()) }
}
