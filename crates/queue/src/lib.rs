//! The extraction queue of every environment (docs/design.md §7): the rows registre workers and OCR
//! workers claim, work on and hand on, in Postgres directly or through Supabase REST.
//!
//! - [`migrate`]: SQL files applied in order, idempotent, recorded in `registre_schema_migrations`;
//!   only `registrectl migrate` runs them, never a worker.
//! - Every state change is ONE SQL function (`functions/<family>.sql`, each with its invariant):
//!   claim for extraction (1 → 2), claim for OCR by source (3 → 6), renew lease, complete
//!   extraction (2 → 3, or 2 → 5 for plan_cadastraux), complete OCR (6 → 5), fail (attempts + 1,
//!   capped exponential backoff, 4 at max attempts), release (no attempt counted), reap expired
//!   leases (attempt counted), count waiting rows per source.
//! - Claims use `FOR UPDATE SKIP LOCKED`, oldest first, and hand out a fencing token
//!   ([`Job::claim_token`]); every later transition presents it and reports whether it applied
//!   ([`Transition`]), so a worker whose row was reaped can never overwrite the new owner's work.
//! - [`Queue`] is one environment's queue, with two backends calling the same functions:
//!   [`PgQueue`] (sqlx pool) and [`RestQueue`] (PostgREST `/rest/v1/rpc/<fn>`); both hand the
//!   rows the functions return to one decoder (`row`), so a claimed row means the same either way.
//! - [`MultiQueue`] polls prod → staging → dev, tags each job with its environment and skips an
//!   environment that is down (logged, retried with backoff) without stalling the others: its
//!   claims (`claim_any_*`, `next_*`) name no environment and return a row from any of them;
//!   [`Heartbeat`] keeps a claimed row's lease alive.

mod heartbeat;
pub mod migrate;
mod multi;
pub mod notify;
mod postgres;
mod rest;
mod row;
mod settle;
mod warm;

use std::collections::BTreeMap;
use std::future::Future;

use chrono::{DateTime, Utc};
use registre_config::{EnvName, QueueConfig};
use uuid::Uuid;

pub use heartbeat::Heartbeat;
pub use migrate::{migrate, migrate_with, MigrateError, MigrateOptions, MigrationReport, MIGRATIONS};
pub use multi::{EnvQueue, MultiQueue};
pub use postgres::{application_name, connect_options, PgQueue};
pub use rest::RestQueue;
pub use settle::{settle, Settled};

/// Status ids of the `extraction_status` table, kept from production (defined in registre_domain).
pub use registre_domain::status;

/// Which half of the pipeline a claimed row is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Claimed by a registre worker (status 2).
    Extraction,
    /// Claimed by an OCR worker (status 6).
    Ocr,
}

pub use registre_domain::DocumentSource;

/// A claimed row: what the worker needs to do the work, plus the claim it must present back.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The environment the row was claimed from; transitions go back to it.
    pub env: EnvName,
    pub stage: Stage,
    pub id: Uuid,
    /// Fencing token of this claim: transitions apply only while it is the row's current claim.
    pub claim_token: Uuid,
    /// `acte`, `index` or `plan_cadastraux` ([`Job::source`] parses it).
    pub document_source: String,
    pub document_number: String,
    pub document_number_normalized: Option<String>,
    pub circonscription_fonciere: Option<String>,
    pub cadastre: Option<String>,
    pub designation_secondaire: Option<String>,
    pub acte_type: Option<String>,
    /// Where the PDF is (set by extraction; what OCR reads).
    pub supabase_path: Option<String>,
    /// Attempts already counted for this stage (`attemtps` or `ocr_attempts`).
    pub attempts: i32,
    /// The row's own limit for this stage; None means QUEUE_MAX_ATTEMPTS.
    pub max_attempts: Option<i32>,
    pub lease_expires_at: DateTime<Utc>,
}

impl Job {
    pub fn source(&self) -> Option<DocumentSource> {
        DocumentSource::parse(&self.document_source)
    }
}

/// What an OCR job hands back when it completes: the raw and the boosted text and, for an index
/// des immeubles, its data (None leaves `index_data` as it is).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OcrTexts<'a> {
    pub file_content: &'a str,
    pub boosted_file_content: &'a str,
    pub index_data: Option<&'a serde_json::Value>,
}

impl<'a> OcrTexts<'a> {
    /// The two texts, no index data.
    pub fn new(file_content: &'a str, boosted_file_content: &'a str) -> OcrTexts<'a> {
        OcrTexts { file_content, boosted_file_content, index_data: None }
    }

    /// The same texts with `index_data` (None: the column stays as it is).
    pub fn with_index(self, index_data: Option<&'a serde_json::Value>) -> OcrTexts<'a> {
        OcrTexts { index_data, ..self }
    }
}

/// Whether a transition after a claim applied. `NotOwner`: the row was reaped, released or
/// completed meanwhile (and perhaps claimed by another worker): nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Applied,
    NotOwner,
}

impl Transition {
    pub fn applied(self) -> bool {
        self == Transition::Applied
    }
    fn from_bool(applied: bool) -> Transition {
        if applied {
            Transition::Applied
        } else {
            Transition::NotOwner
        }
    }
}

/// What a `fail` did to the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    /// Back to waiting (1 or 3), claimable again from `not_before`.
    Retry { attempts: i32, not_before: DateTime<Utc> },
    /// Attempts exhausted: status 4 (Erreur) with the error recorded.
    Failed { attempts: i32 },
    /// The caller no longer held the row: nothing was changed.
    NotOwner,
}

/// Status-3 rows per document_source (absent sources: none waiting).
pub type WaitingCounts = BTreeMap<String, u64>;

/// The numbers every backend passes to the SQL functions, from [`QueueConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSettings {
    pub lease_ttl_ms: i32,
    pub backoff_base_ms: i32,
    pub backoff_max_ms: i32,
    pub default_max_attempts: i32,
}

impl QueueSettings {
    /// The configuration bounds these to what an SQL `integer` holds; larger values saturate.
    pub fn from_config(config: &QueueConfig) -> QueueSettings {
        let ms = |d: std::time::Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX);
        QueueSettings {
            lease_ttl_ms: ms(config.lease_ttl),
            backoff_base_ms: ms(config.backoff_base),
            backoff_max_ms: ms(config.backoff_max),
            default_max_attempts: i32::try_from(config.max_attempts).unwrap_or(i32::MAX),
        }
    }
}

/// Why a queue call failed. Display is one line naming the environment and the operation; never
/// a secret (URLs are redacted, keys are only in headers).
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The tables or functions are not there: the environment was never migrated.
    #[error("extraction_queue missing in {env}: run registrectl migrate")]
    NotMigrated { env: EnvName },
    #[error(transparent)]
    Database(DatabaseError),
    #[error("{env}: {operation} failed: HTTP {status}: {message}")]
    Rest { env: EnvName, operation: &'static str, status: u16, message: String },
    #[error("{env}: {operation} could not reach the REST API: {message}")]
    Http { env: EnvName, operation: &'static str, message: String },
    #[error("{env}: {operation} returned an unexpected reply: {detail}")]
    Reply { env: EnvName, operation: &'static str, detail: String },
    #[error("{env}: {operation} did not answer within {timeout_ms} ms")]
    Timeout { env: EnvName, operation: &'static str, timeout_ms: u64 },
    /// Every connection of this process's pool was in use for the whole wait: this process is
    /// busy, the environment is fine (never marks it down; QUEUE_PG_POOL_SIZE sizes the pool).
    #[error("{env}: {operation} waited {timeout_ms} ms for a free connection: all {size} connections of the pool were in use (QUEUE_PG_POOL_SIZE)")]
    Busy { env: EnvName, operation: &'static str, timeout_ms: u64, size: u32 },
    #[error("{env}: {detail}")]
    Setup { env: EnvName, detail: String },
    #[error("{env} is not served by this queue (the job came from an environment it was not built with)")]
    UnknownEnvironment { env: EnvName },
}

impl QueueError {
    /// The environment the error is about.
    pub fn env(&self) -> EnvName {
        match self {
            QueueError::NotMigrated { env }
            | QueueError::Database(DatabaseError { env, .. })
            | QueueError::Rest { env, .. }
            | QueueError::Http { env, .. }
            | QueueError::Reply { env, .. }
            | QueueError::Timeout { env, .. }
            | QueueError::Busy { env, .. }
            | QueueError::Setup { env, .. }
            | QueueError::UnknownEnvironment { env } => *env,
        }
    }

    /// Whether this error says the ENVIRONMENT cannot be used (unreachable, not answering, not
    /// migrated, refusing our credentials), as opposed to one call or one row failing while the
    /// environment is fine: a constraint or data error on a row, a reply we could not read, a
    /// busy local pool. Only the former takes an environment off the claim path.
    pub fn is_environment_failure(&self) -> bool {
        match self {
            QueueError::NotMigrated { .. } | QueueError::Http { .. } | QueueError::Timeout { .. } | QueueError::Setup { .. } => true,
            QueueError::Busy { .. } | QueueError::Reply { .. } | QueueError::UnknownEnvironment { .. } => false,
            QueueError::Database(DatabaseError { source, .. }) => sql_error_is_connection_level(source),
            // PostgREST: 5xx is the API or the database behind it failing (503: no connection),
            // 401/403 a refused key; other 4xx are the request's own data (400: 22xxx data
            // exception, 409: 23xxx constraint violation, ...).
            QueueError::Rest { status, .. } => *status >= 500 || *status == 401 || *status == 403,
        }
    }
}

/// A database call that failed: the environment, the operation and sqlx's error. One type for
/// every error enum that wraps a failed SQL call ([`QueueError`], [`MigrateError`], and the
/// operations' errors), so they all say it the same way.
#[derive(Debug, thiserror::Error)]
#[error("{env}: {operation} failed: {source}")]
pub struct DatabaseError {
    pub env: EnvName,
    pub operation: &'static str,
    #[source]
    pub source: sqlx::Error,
}

/// Whether a failed SQL call says the queue's tables or functions are not there (undefined_table,
/// undefined_function): the database was never migrated.
pub fn means_not_migrated(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("42P01") | Some("42883")))
}

/// sqlx errors that mean the connection or the server, not the statement's data.
pub(crate) fn sql_error_is_connection_level(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            // 08: connection exception; 53: insufficient resources (too many connections, disk
            // full); 57P: shut down / cannot connect now; 28: bad credentials; 3D: no such database.
            ["08", "53", "57P", "28", "3D"].iter().any(|class| code.starts_with(class))
        }
        sqlx::Error::RowNotFound
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::Encode(_)
        | sqlx::Error::TypeNotFound { .. } => false,
        // Io, Tls, Protocol, PoolTimedOut (connecting never succeeded), PoolClosed, Configuration...
        _ => true,
    }
}

/// What `release_after_crash` did to the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashOutcome {
    /// Back to waiting (status 1), no attempt counted; `crashes` so far.
    Released { crashes: i32 },
    /// The browser crashed `crashes` times on this document: status 4 (Erreur), reason recorded.
    Failed { crashes: i32 },
    /// The caller no longer held the row: nothing was changed.
    NotOwner,
}

/// A registry login lent by `queue_acquire_account`. Debug never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct LentAccount {
    pub id: Uuid,
    pub username: String,
    pub password: registre_config::Secret,
}

impl std::fmt::Debug for LentAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LentAccount").field("id", &self.id).field("username", &self.username).finish_non_exhaustive()
    }
}

/// Postgres text cannot hold NUL: an error message carrying one (from a page or a file) would
/// make the fail itself fail. Replaced so the row's failure is still recorded, readably.
pub(crate) fn storable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', "\u{fffd}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// One environment's queue. Both backends call the same SQL functions, so they share one set of
/// semantics; every method is one round trip.
pub trait Queue: Send + Sync {
    fn env(&self) -> EnvName;

    /// Claims the oldest claimable status-1 row (→ 2) under `claim_token` (chosen by the caller,
    /// fresh for every claim), or None. If the answer is lost, [`Queue::release_claim`] with the
    /// same token undoes the claim.
    fn claim_extraction(
        &self,
        worker_id: &str,
        claim_token: Uuid,
    ) -> impl Future<Output = Result<Option<Job>, QueueError>> + Send;

    /// Claims the oldest claimable status-3 row of `source` (→ 6) under `claim_token`, or None.
    fn claim_ocr(
        &self,
        worker_id: &str,
        source: DocumentSource,
        claim_token: Uuid,
    ) -> impl Future<Output = Result<Option<Job>, QueueError>> + Send;

    /// Undoes whatever was claimed under `claim_token` (a claim whose answer never came): the row
    /// goes back to waiting, no attempt counted, and a claim with that token arriving later claims
    /// nothing. How many rows went back (0 or 1).
    fn release_claim(&self, claim_token: Uuid) -> impl Future<Output = Result<u64, QueueError>> + Send;

    /// The browser crashed on the job's document: no attempt counted, but at `max_crashes`
    /// crashes the row ends in 4 (Erreur) with that reason (a poisonous document never loops).
    fn release_after_crash(
        &self,
        job: &Job,
        error: &str,
        max_crashes: i32,
    ) -> impl Future<Output = Result<CrashOutcome, QueueError>> + Send;

    /// Lends a free registry account (`worker_accounts`) to `holder` for `lease_ms`, or None.
    fn acquire_account(&self, holder: &str, lease_ms: i32) -> impl Future<Output = Result<Option<LentAccount>, QueueError>> + Send;

    /// Extends `holder`'s lease of account `id`; NotOwner once it lost it.
    fn renew_account(&self, id: Uuid, holder: &str, lease_ms: i32) -> impl Future<Output = Result<Transition, QueueError>> + Send;

    /// Frees account `id` if `holder` still holds it.
    fn release_account(&self, id: Uuid, holder: &str) -> impl Future<Output = Result<Transition, QueueError>> + Send;

    /// Records a login with account `id`: refused → failure_count + 1; accepted → reset to 0.
    fn report_account_login(&self, id: Uuid, success: bool) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// Extends the lease of a claimed row (either stage).
    fn renew(&self, job: &Job) -> impl Future<Output = Result<Transition, QueueError>> + Send;

    /// 2 → 3 (2 → 5 for plan_cadastraux), recording where the PDF is and, in `fetched_as`, what
    /// delivered it after the fetcher's fallbacks (`FetchedDocument::fetched_as`; None: no fallback
    /// information, the column stays NULL).
    fn complete_extraction(
        &self,
        job: &Job,
        supabase_path: &str,
        fetched_as: Option<&str>,
    ) -> impl Future<Output = Result<Transition, QueueError>> + Send;

    /// 6 → 5 with the raw and the boosted text.
    fn complete_ocr(&self, job: &Job, file_content: &str, boosted_file_content: &str) -> impl Future<Output = Result<Transition, QueueError>> + Send {
        async move { self.complete_ocr_with(job, OcrTexts::new(file_content, boosted_file_content)).await }
    }

    /// [`Queue::complete_ocr`] with all the job hands back: with `texts.index_data` (the index des
    /// immeubles as data) it writes that too, in the same transition.
    fn complete_ocr_with(&self, job: &Job, texts: OcrTexts<'_>) -> impl Future<Output = Result<Transition, QueueError>> + Send;

    /// Counts an attempt of the job's stage: retry later with backoff, or status 4 at max attempts.
    fn fail(&self, job: &Job, error: &str) -> impl Future<Output = Result<FailOutcome, QueueError>> + Send;

    /// Fails a claimed extraction for good (2 → 4 at once, one attempt counted, no backoff): the
    /// registry rejected the row's own data, so retrying cannot help. OCR jobs take `fail`.
    fn fail_final(&self, job: &Job, error: &str) -> impl Future<Output = Result<FailOutcome, QueueError>> + Send;

    /// Gives the row back (2 → 1, 6 → 3) without counting an attempt: for shutdown.
    fn release(&self, job: &Job) -> impl Future<Output = Result<Transition, QueueError>> + Send;

    /// Returns rows whose lease expired to waiting (attempt counted); how many.
    fn reap_expired(&self) -> impl Future<Output = Result<u64, QueueError>> + Send;

    /// Status-3 rows per document_source.
    fn count_waiting(&self) -> impl Future<Output = Result<WaitingCounts, QueueError>> + Send;
}
