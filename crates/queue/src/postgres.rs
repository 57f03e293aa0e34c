//! The direct Postgres backend: a sqlx pool calling the queue's SQL functions.
//! Works with any Postgres and with Supabase's direct connection or session pooler (port 5432);
//! the transaction pooler (6543) breaks prepared statements.

use std::str::FromStr;
use std::time::Duration;

use registre_config::{EnvName, SecretUrl};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::*;

pub struct PgQueue {
    env: EnvName,
    pool: PgPool,
    settings: QueueSettings,
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
        let options = PgConnectOptions::from_str(url.expose()).map_err(|_| QueueError::Setup {
            env,
            detail: format!("the database URL {} is not a usable Postgres URL", url.redacted()),
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .min_connections(0)
            .acquire_timeout(acquire_timeout)
            .connect_lazy_with(options);
        Ok(PgQueue { env, pool, settings })
    }

    /// Wraps an existing pool (tests, benchmarks).
    pub fn from_pool(env: EnvName, pool: PgPool, settings: QueueSettings) -> PgQueue {
        PgQueue { env, pool, settings }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn settings(&self) -> QueueSettings {
        self.settings
    }

    fn error(&self, operation: &'static str) -> impl FnOnce(sqlx::Error) -> QueueError {
        let env = self.env;
        move |source| {
            if let sqlx::Error::Database(db) = &source {
                // undefined_table, undefined_function: this database was never migrated.
                if matches!(db.code().as_deref(), Some("42P01") | Some("42883")) {
                    return QueueError::NotMigrated { env };
                }
            }
            QueueError::Database { env, operation, source }
        }
    }
}

impl Queue for PgQueue {
    fn env(&self) -> EnvName {
        self.env
    }

    async fn claim_extraction(&self, worker_id: &str) -> Result<Option<Job>, QueueError> {
        let row: Option<ClaimedRow> = sqlx::query_as("SELECT * FROM queue_claim_extraction($1, $2)")
            .bind(worker_id)
            .bind(self.settings.lease_ttl_ms)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.error("claim for extraction"))?;
        Ok(row.map(|r| r.into_job(self.env, Stage::Extraction)))
    }

    async fn claim_ocr(&self, worker_id: &str, source: DocumentSource) -> Result<Option<Job>, QueueError> {
        let row: Option<ClaimedRow> = sqlx::query_as("SELECT * FROM queue_claim_ocr($1, $2, $3)")
            .bind(worker_id)
            .bind(source.as_str())
            .bind(self.settings.lease_ttl_ms)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.error("claim for OCR"))?;
        Ok(row.map(|r| r.into_job(self.env, Stage::Ocr)))
    }

    async fn renew(&self, job: &Job) -> Result<Transition, QueueError> {
        let applied: bool = sqlx::query_scalar("SELECT queue_renew_lease($1, $2, $3)")
            .bind(job.id)
            .bind(job.claim_token)
            .bind(self.settings.lease_ttl_ms)
            .fetch_one(&self.pool)
            .await
            .map_err(self.error("renew lease"))?;
        Ok(Transition::from_bool(applied))
    }

    async fn complete_extraction(&self, job: &Job, supabase_path: &str) -> Result<Transition, QueueError> {
        let applied: bool = sqlx::query_scalar("SELECT queue_complete_extraction($1, $2, $3)")
            .bind(job.id)
            .bind(job.claim_token)
            .bind(supabase_path)
            .fetch_one(&self.pool)
            .await
            .map_err(self.error("complete extraction"))?;
        Ok(Transition::from_bool(applied))
    }

    async fn complete_ocr(&self, job: &Job, file_content: &str, boosted_file_content: &str) -> Result<Transition, QueueError> {
        let applied: bool = sqlx::query_scalar("SELECT queue_complete_ocr($1, $2, $3, $4)")
            .bind(job.id)
            .bind(job.claim_token)
            .bind(file_content)
            .bind(boosted_file_content)
            .fetch_one(&self.pool)
            .await
            .map_err(self.error("complete OCR"))?;
        Ok(Transition::from_bool(applied))
    }

    async fn fail(&self, job: &Job, error: &str) -> Result<FailOutcome, QueueError> {
        let (sql, operation) = match job.stage {
            Stage::Extraction => ("SELECT * FROM queue_fail_extraction($1, $2, $3, $4, $5, $6)", "fail extraction"),
            Stage::Ocr => ("SELECT * FROM queue_fail_ocr($1, $2, $3, $4, $5, $6)", "fail OCR"),
        };
        let row: Option<FailRow> = sqlx::query_as(sql)
            .bind(job.id)
            .bind(job.claim_token)
            .bind(error)
            .bind(self.settings.backoff_base_ms)
            .bind(self.settings.backoff_max_ms)
            .bind(self.settings.default_max_attempts)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.error(operation))?;
        Ok(FailRow::outcome(row))
    }

    async fn fail_final(&self, job: &Job, error: &str) -> Result<FailOutcome, QueueError> {
        if job.stage == Stage::Ocr {
            return self.fail(job, error).await;
        }
        let row: Option<FailRow> = sqlx::query_as("SELECT * FROM queue_fail_extraction_final($1, $2, $3)")
            .bind(job.id)
            .bind(job.claim_token)
            .bind(error)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.error("fail extraction (final)"))?;
        Ok(FailRow::outcome(row))
    }

    async fn release(&self, job: &Job) -> Result<Transition, QueueError> {
        let applied: bool = sqlx::query_scalar("SELECT queue_release($1, $2)")
            .bind(job.id)
            .bind(job.claim_token)
            .fetch_one(&self.pool)
            .await
            .map_err(self.error("release"))?;
        Ok(Transition::from_bool(applied))
    }

    async fn reap_expired(&self) -> Result<u64, QueueError> {
        let n: i32 = sqlx::query_scalar("SELECT queue_reap_expired($1)")
            .bind(self.settings.default_max_attempts)
            .fetch_one(&self.pool)
            .await
            .map_err(self.error("reap expired leases"))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn count_waiting(&self) -> Result<WaitingCounts, QueueError> {
        let rows: Vec<WaitingRow> = sqlx::query_as("SELECT * FROM queue_count_waiting()")
            .fetch_all(&self.pool)
            .await
            .map_err(self.error("count waiting rows"))?;
        Ok(waiting_counts(rows))
    }
}
