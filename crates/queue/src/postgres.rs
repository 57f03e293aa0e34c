//! The direct Postgres backend: a sqlx pool calling the queue's SQL functions, each call on a
//! connection kept warm from the previous one (crate::warm: no release ping between calls).
//! Works with any Postgres and with Supabase's direct connection or session pooler (port 5432);
//! the transaction pooler (6543) breaks prepared statements.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use registre_config::{EnvName, SecretUrl};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use uuid::Uuid;

use crate::warm::{Held, Warm};
use crate::row::{row_count, AccountRow, ClaimedRow, CrashRow, FailRow, WaitingRow};
use crate::*;

/// The `application_name` this process gives Postgres (pg_stat_activity) unless the database URL
/// names one: the program's file name (registre-workers, ocr-pool, start-all-workers,
/// registre-api, registre-monitor, registrectl), so an operator sees which binary holds each
/// connection and a soak counts connections per binary.
pub fn application_name() -> String {
    std::env::args_os()
        .next()
        .and_then(|arg0| std::path::Path::new(&arg0).file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "registre".to_string())
}

/// The connection options of a database URL, with [`application_name`] when the URL sets none.
/// Fails when the URL is not a Postgres URL (callers name the URL, redacted, in their error: the
/// parser's error may quote it).
pub fn connect_options(url: &SecretUrl) -> Result<PgConnectOptions, sqlx::Error> {
    let options = PgConnectOptions::from_str(url.expose())?;
    Ok(match options.get_application_name() {
        Some(_) => options,
        None => options.application_name(&application_name()),
    })
}

pub struct PgQueue {
    env: EnvName,
    pool: PgPool,
    settings: QueueSettings,
    /// Longest wait for a free connection of the pool (QUEUE_CALL_TIMEOUT_MS).
    acquire_timeout: Duration,
    /// The pool's connections kept between calls.
    warm: Arc<Warm>,
}

impl std::fmt::Debug for PgQueue {
    // The pool's options hold the password: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgQueue").field("env", &self.env).field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl PgQueue {
    /// A pool that connects on first use: building it never fails because the database is down
    /// (the first call does, and the multi-environment poller then skips this environment).
    pub fn connect_lazy(
        env: EnvName,
        url: &SecretUrl,
        settings: QueueSettings,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<PgQueue, QueueError> {
        let options = connect_options(url).map_err(|_| QueueError::Setup {
            env,
            detail: format!("the database URL {} is not a usable Postgres URL", url.redacted()),
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .min_connections(0)
            .acquire_timeout(acquire_timeout)
            // sqlx pings every idle connection it hands out by default: one more round trip per
            // call, which doubled the cost of claim and complete. A connection that broke while
            // idle fails its call instead, which the callers already handle (the environment is
            // marked down and probed, a claim whose answer was lost is released by its token).
            .test_before_acquire(false)
            .connect_lazy_with(options);
        Ok(PgQueue { env, pool, settings, acquire_timeout, warm: Warm::new() })
    }

    /// Wraps an existing pool (tests, benchmarks).
    pub fn from_pool(env: EnvName, pool: PgPool, settings: QueueSettings) -> PgQueue {
        let acquire_timeout = pool.options().get_acquire_timeout();
        PgQueue { env, pool, settings, acquire_timeout, warm: Warm::new() }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn settings(&self) -> QueueSettings {
        self.settings
    }

    /// A connection of the pool, warm from an earlier call when there is one (see [`crate::warm`]:
    /// no release ping between calls). A wait that ends with every connection checked out is [`QueueError::Busy`]
    /// (this process is busy, not the environment down); one that ends because no connection could
    /// be opened is a connection-level [`QueueError::Database`].
    async fn conn(&self, operation: &'static str) -> Result<Held<'_>, QueueError> {
        match self.warm.take(&self.pool).await {
            Ok(conn) => Ok(conn),
            Err(sqlx::Error::PoolTimedOut) if self.pool.size() >= self.pool.options().get_max_connections() => Err(QueueError::Busy {
                env: self.env,
                operation,
                timeout_ms: u64::try_from(self.acquire_timeout.as_millis()).unwrap_or(u64::MAX),
                size: self.pool.options().get_max_connections(),
            }),
            Err(e) => Err(self.error(operation)(e)),
        }
    }

    fn error(&self, operation: &'static str) -> impl FnOnce(sqlx::Error) -> QueueError {
        let env = self.env;
        move |source| {
            if means_not_migrated(&source) {
                return QueueError::NotMigrated { env };
            }
            QueueError::Database(DatabaseError { env, operation, source })
        }
    }
}

impl Queue for PgQueue {
    fn env(&self) -> EnvName {
        self.env
    }

    async fn claim_extraction(&self, worker_id: &str, claim_token: Uuid) -> Result<Option<Job>, QueueError> {
        let mut conn = self.conn("claim for extraction").await?;
        let row = sqlx::query_as("SELECT * FROM queue_claim_extraction($1, $2, $3)")
            .bind(worker_id)
            .bind(self.settings.lease_ttl_ms)
            .bind(claim_token)
            .fetch_optional(conn.raw())
            .await;
        let row: Option<ClaimedRow> = conn.checked(row).map_err(self.error("claim for extraction"))?;
        Ok(ClaimedRow::job(row, self.env, Stage::Extraction))
    }

    async fn claim_ocr(&self, worker_id: &str, source: DocumentSource, claim_token: Uuid) -> Result<Option<Job>, QueueError> {
        let mut conn = self.conn("claim for OCR").await?;
        let row = sqlx::query_as("SELECT * FROM queue_claim_ocr($1, $2, $3, $4)")
            .bind(worker_id)
            .bind(source.as_str())
            .bind(self.settings.lease_ttl_ms)
            .bind(claim_token)
            .fetch_optional(conn.raw())
            .await;
        let row: Option<ClaimedRow> = conn.checked(row).map_err(self.error("claim for OCR"))?;
        Ok(ClaimedRow::job(row, self.env, Stage::Ocr))
    }

    async fn renew(&self, job: &Job) -> Result<Transition, QueueError> {
        let mut conn = self.conn("renew lease").await?;
        let applied = sqlx::query_scalar("SELECT queue_renew_lease($1, $2, $3)")
            .bind(job.id)
            .bind(job.claim_token)
            .bind(self.settings.lease_ttl_ms)
            .fetch_one(conn.raw())
            .await;
        let applied: bool = conn.checked(applied).map_err(self.error("renew lease"))?;
        Ok(Transition::from_bool(applied))
    }

    async fn complete_extraction(&self, job: &Job, supabase_path: &str, fetched_as: Option<&str>) -> Result<Transition, QueueError> {
        let mut conn = self.conn("complete extraction").await?;
        let applied = sqlx::query_scalar("SELECT queue_complete_extraction($1, $2, $3, $4)")
            .bind(job.id)
            .bind(job.claim_token)
            .bind(supabase_path)
            .bind(fetched_as)
            .fetch_one(conn.raw())
            .await;
        let applied: bool = conn.checked(applied).map_err(self.error("complete extraction"))?;
        Ok(Transition::from_bool(applied))
    }

    async fn complete_ocr_with(&self, job: &Job, texts: OcrTexts<'_>) -> Result<Transition, QueueError> {
        let mut conn = self.conn("complete OCR").await?;
        let applied = sqlx::query_scalar("SELECT queue_complete_ocr($1, $2, $3, $4, $5)")
            .bind(job.id)
            .bind(job.claim_token)
            .bind(texts.file_content)
            .bind(texts.boosted_file_content)
            .bind(texts.index_data)
            .fetch_one(conn.raw())
            .await;
        let applied: bool = conn.checked(applied).map_err(self.error("complete OCR"))?;
        Ok(Transition::from_bool(applied))
    }

    async fn fail(&self, job: &Job, error: &str) -> Result<FailOutcome, QueueError> {
        let (sql, operation) = match job.stage {
            Stage::Extraction => ("SELECT * FROM queue_fail_extraction($1, $2, $3, $4, $5, $6)", "fail extraction"),
            Stage::Ocr => ("SELECT * FROM queue_fail_ocr($1, $2, $3, $4, $5, $6)", "fail OCR"),
        };
        let mut conn = self.conn(operation).await?;
        let row = sqlx::query_as(sql)
            .bind(job.id)
            .bind(job.claim_token)
            .bind(storable(error).as_ref())
            .bind(self.settings.backoff_base_ms)
            .bind(self.settings.backoff_max_ms)
            .bind(self.settings.default_max_attempts)
            .fetch_optional(conn.raw())
            .await;
        let row: Option<FailRow> = conn.checked(row).map_err(self.error(operation))?;
        Ok(FailRow::outcome(row))
    }

    async fn fail_final(&self, job: &Job, error: &str) -> Result<FailOutcome, QueueError> {
        if job.stage == Stage::Ocr {
            return self.fail(job, error).await;
        }
        let mut conn = self.conn("fail extraction (final)").await?;
        let row = sqlx::query_as("SELECT * FROM queue_fail_extraction_final($1, $2, $3)")
            .bind(job.id)
            .bind(job.claim_token)
            .bind(error)
            .fetch_optional(conn.raw())
            .await;
        let row: Option<FailRow> = conn.checked(row).map_err(self.error("fail extraction (final)"))?;
        Ok(FailRow::outcome(row))
    }

    async fn release(&self, job: &Job) -> Result<Transition, QueueError> {
        let mut conn = self.conn("release").await?;
        let applied = sqlx::query_scalar("SELECT queue_release($1, $2)")
            .bind(job.id)
            .bind(job.claim_token)
            .fetch_one(conn.raw())
            .await;
        let applied: bool = conn.checked(applied).map_err(self.error("release"))?;
        Ok(Transition::from_bool(applied))
    }

    async fn reap_expired(&self) -> Result<u64, QueueError> {
        let mut conn = self.conn("reap expired leases").await?;
        let n = sqlx::query_scalar("SELECT queue_reap_expired($1)")
            .bind(self.settings.default_max_attempts)
            .fetch_one(conn.raw())
            .await;
        let n: i32 = conn.checked(n).map_err(self.error("reap expired leases"))?;
        Ok(row_count(n.into()))
    }

    async fn count_waiting(&self) -> Result<WaitingCounts, QueueError> {
        let mut conn = self.conn("count waiting rows").await?;
        let rows = sqlx::query_as("SELECT * FROM queue_count_waiting()")
            .fetch_all(conn.raw())
            .await;
        let rows: Vec<WaitingRow> = conn.checked(rows).map_err(self.error("count waiting rows"))?;
        Ok(WaitingRow::counts(rows))
    }

    async fn release_claim(&self, claim_token: Uuid) -> Result<u64, QueueError> {
        let mut conn = self.conn("release a lost claim").await?;
        let n = sqlx::query_scalar("SELECT queue_release_claim($1)")
            .bind(claim_token)
            .fetch_one(conn.raw())
            .await;
        let n: i32 = conn.checked(n).map_err(self.error("release a lost claim"))?;
        Ok(row_count(n.into()))
    }

    async fn release_after_crash(&self, job: &Job, error: &str, max_crashes: i32) -> Result<CrashOutcome, QueueError> {
        let mut conn = self.conn("release after a browser crash").await?;
        let row = sqlx::query_as("SELECT * FROM queue_release_after_crash($1, $2, $3, $4)")
            .bind(job.id)
            .bind(job.claim_token)
            .bind(storable(error).as_ref())
            .bind(max_crashes)
            .fetch_optional(conn.raw())
            .await;
        let row: Option<CrashRow> = conn.checked(row).map_err(self.error("release after a browser crash"))?;
        Ok(CrashRow::outcome(row))
    }

    async fn acquire_account(&self, holder: &str, lease_ms: i32) -> Result<Option<LentAccount>, QueueError> {
        let mut conn = self.conn("acquire a registry account").await?;
        let row = sqlx::query_as("SELECT * FROM queue_acquire_account($1, $2)")
            .bind(holder)
            .bind(lease_ms)
            .fetch_optional(conn.raw())
            .await;
        let row: Option<AccountRow> = conn.checked(row).map_err(self.error("acquire a registry account"))?;
        Ok(AccountRow::lent(row))
    }

    async fn renew_account(&self, id: Uuid, holder: &str, lease_ms: i32) -> Result<Transition, QueueError> {
        let mut conn = self.conn("renew a registry account").await?;
        let applied = sqlx::query_scalar("SELECT queue_renew_account($1, $2, $3)")
            .bind(id)
            .bind(holder)
            .bind(lease_ms)
            .fetch_one(conn.raw())
            .await;
        let applied: bool = conn.checked(applied).map_err(self.error("renew a registry account"))?;
        Ok(Transition::from_bool(applied))
    }

    async fn release_account(&self, id: Uuid, holder: &str) -> Result<Transition, QueueError> {
        let mut conn = self.conn("release a registry account").await?;
        let applied = sqlx::query_scalar("SELECT queue_release_account($1, $2)")
            .bind(id)
            .bind(holder)
            .fetch_one(conn.raw())
            .await;
        let applied: bool = conn.checked(applied).map_err(self.error("release a registry account"))?;
        Ok(Transition::from_bool(applied))
    }

    async fn report_account_login(&self, id: Uuid, success: bool) -> Result<(), QueueError> {
        let mut conn = self.conn("record a registry login").await?;
        let recorded = sqlx::query_scalar("SELECT queue_report_account_login($1, $2)")
            .bind(id)
            .bind(success)
            .fetch_one(conn.raw())
            .await;
        let _: bool = conn.checked(recorded).map_err(self.error("record a registry login"))?;
        Ok(())
    }
}
