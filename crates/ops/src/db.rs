//! The queue side of the operations, per environment (Postgres via sqlx). Reads are plain queries
//! served by the indexes of migration 0050; every change is one SQL function (ops_enqueue,
//! ops_retry, ops_cancel), so the API, the monitor and registrectl share one set of semantics.

use std::future::Future;

use chrono::{DateTime, Utc};
use registre_config::EnvName;
use registre_domain::status;
use serde::Serialize;
use sqlx::{PgPool, QueryBuilder};
use uuid::Uuid;

use crate::{Cursor, NewExtraction, Ops, OpsError, QUERY_TIMEOUT};

/// Rows of one status and source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusCount {
    pub status_id: i32,
    pub status: &'static str,
    pub document_source: String,
    pub count: u64,
}

/// Age of the oldest row waiting at each stage (since it was queued), in seconds; None: none waiting.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct OldestWaiting {
    /// Status 1 (waiting for a registre worker).
    pub extraction: Option<f64>,
    /// Status 3 (downloaded, waiting for an OCR worker).
    pub ocr: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MinuteCount {
    pub minute: DateTime<Utc>,
    pub count: u64,
}

/// What the dashboard and /metrics show of one environment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnvOverview {
    #[serde(serialize_with = "env_name")]
    pub env: EnvName,
    pub counts: Vec<StatusCount>,
    pub oldest_waiting_seconds: OldestWaiting,
    /// Rows that reached status 5, per minute, the last 60 minutes (oldest first, zeros included).
    pub completions_per_minute: Vec<MinuteCount>,
    /// The latest updated_at of any row: changes whenever a row is inserted or changes status.
    pub last_change: Option<DateTime<Utc>>,
}

fn env_name<S: serde::Serializer>(env: &EnvName, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(env.as_str())
}

/// One row of the jobs list.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct ExtractionRow {
    pub id: Uuid,
    pub document_source: String,
    pub document_number: Option<String>,
    pub circonscription_fonciere: Option<String>,
    pub cadastre: Option<String>,
    pub designation_secondaire: Option<String>,
    pub acte_type: Option<String>,
    pub status_id: i32,
    #[sqlx(skip)]
    pub status: &'static str,
    pub worker_id: Option<String>,
    pub ocr_worker_id: Option<String>,
    pub attempts: Option<i32>,
    pub max_attempts: Option<i32>,
    pub ocr_attempts: Option<i32>,
    pub ocr_max_attempts: Option<i32>,
    pub error_message: Option<String>,
    pub ocr_error: Option<String>,
    pub supabase_path: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One row with what a detail view needs besides: timings, leases and the OCR text (excerpts).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExtractionDetail {
    #[serde(flatten)]
    pub row: ExtractionRow,
    pub document_number_normalized: Option<String>,
    /// What delivered the document after the fetcher's fallbacks (e.g. "circonscription_fonciere=
    /// Montréal, acte_type=Acte divers"); None before completion or without fallback information.
    pub fetched_as: Option<String>,
    pub processing_started_at: Option<DateTime<Utc>>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub ocr_started_at: Option<DateTime<Utc>>,
    pub ocr_completed_at: Option<DateTime<Utc>>,
    pub ocr_lease_expires_at: Option<DateTime<Utc>>,
    pub ocr_last_error_at: Option<DateTime<Utc>>,
    /// The first [`EXCERPT_CHARS`] characters of file_content (raw OCR text).
    pub file_content_excerpt: Option<String>,
    pub file_content_chars: Option<i32>,
    /// The first [`EXCERPT_CHARS`] characters of boosted_file_content (corrected text).
    pub boosted_file_content_excerpt: Option<String>,
    pub boosted_file_content_chars: Option<i32>,
    /// The index des immeubles as data (`index` rows read since index_data exists; docs/ocr.md,
    /// Structured index), whole: it is the structured form of the text, a few KB a page.
    pub index_data: Option<serde_json::Value>,
}

/// Length of the OCR text excerpts of a detail (the full text can be megabytes).
pub const EXCERPT_CHARS: i32 = 2000;

/// Filters of the jobs list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub status_id: Option<i32>,
    pub document_source: Option<String>,
    pub limit: u32,
    pub after: Option<Cursor>,
}

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page {
    pub rows: Vec<ExtractionRow>,
    /// Cursor of the next page; None on the last page.
    pub next_cursor: Option<String>,
}

/// What enqueue did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Enqueued {
    pub row: ExtractionDetail,
    /// True when an identical document was already waiting or in progress: that row is returned.
    pub duplicate: bool,
}

const ROW_COLUMNS: &str = "id, document_source::text AS document_source, document_number::text AS document_number, \
     circonscription_fonciere::text AS circonscription_fonciere, cadastre::text AS cadastre, \
     designation_secondaire::text AS designation_secondaire, acte_type::text AS acte_type, status_id, worker_id, \
     ocr_worker_id, attemtps AS attempts, max_attempts, ocr_attempts, ocr_max_attempts, error_message, ocr_error, \
     supabase_path, created_at, updated_at";

fn db_error(env: EnvName, operation: &'static str) -> impl FnOnce(sqlx::Error) -> OpsError {
    move |source| {
        if registre_queue::means_not_migrated(&source) {
            return OpsError::NotMigrated { env };
        }
        OpsError::Database(registre_queue::DatabaseError { env, operation, source })
    }
}

pub(crate) async fn timed<T>(
    env: EnvName,
    operation: &'static str,
    fut: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, OpsError> {
    match tokio::time::timeout(QUERY_TIMEOUT, fut).await {
        Ok(result) => result.map_err(db_error(env, operation)),
        Err(_) => Err(OpsError::Timeout { env, operation, seconds: QUERY_TIMEOUT.as_secs() }),
    }
}

/// The server-side bound of every operator write (`SET LOCAL statement_timeout`, in the write's own
/// transaction): shorter than the client's [`QUERY_TIMEOUT`], so the server gives up and rolls back
/// before the client stops waiting, and "failed" always means nothing changed.
pub const WRITE_STATEMENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(8);

/// A write's statement, run on the connection of its transaction.
pub(crate) type WriteFuture<'c, T> = std::pin::Pin<Box<dyn Future<Output = Result<T, sqlx::Error>> + Send + 'c>>;

/// Where a write was when it went wrong: before COMMIT was sent nothing can have changed; once it
/// was sent, a lost answer leaves the outcome unknown.
enum WriteError {
    Before(sqlx::Error),
    Commit(sqlx::Error),
}

/// Runs one operator write in its own transaction bounded by [`WRITE_STATEMENT_TIMEOUT`] on the
/// server and [`QUERY_TIMEOUT`] on the client. An error before COMMIT is a failure (rolled back); a
/// COMMIT whose answer is lost (connection cut, client timeout) is [`OpsError::OutcomeUnknown`],
/// telling the operator to look (`check`) instead of saying "failed".
pub(crate) async fn write<T, F>(pool: &PgPool, env: EnvName, operation: &'static str, check: String, f: F) -> Result<T, OpsError>
where
    T: Send,
    F: for<'c> FnOnce(&'c mut sqlx::PgConnection) -> WriteFuture<'c, T> + Send,
{
    let committing = std::sync::atomic::AtomicBool::new(false);
    let run = async {
        let mut tx = pool.begin().await.map_err(WriteError::Before)?;
        let timeout = format!("SET LOCAL statement_timeout = {}", WRITE_STATEMENT_TIMEOUT.as_millis());
        sqlx::query(&timeout).execute(&mut *tx).await.map_err(WriteError::Before)?;
        let value = f(&mut tx).await.map_err(WriteError::Before)?;
        committing.store(true, std::sync::atomic::Ordering::SeqCst);
        tx.commit().await.map_err(WriteError::Commit)?;
        Ok(value)
    };
    let unknown = |detail: String| OpsError::OutcomeUnknown { env, operation, detail, check: check.clone() };
    match tokio::time::timeout(QUERY_TIMEOUT, run).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(WriteError::Before(e))) => Err(write_error(env, operation, e)),
        // The server answered the COMMIT with an error: it did not commit.
        Ok(Err(WriteError::Commit(e @ sqlx::Error::Database(_)))) => Err(write_error(env, operation, e)),
        Ok(Err(WriteError::Commit(e))) => Err(unknown(format!("the answer to COMMIT was lost ({e})"))),
        Err(_) if committing.load(std::sync::atomic::Ordering::SeqCst) => {
            Err(unknown(format!("no answer to COMMIT within {} s", QUERY_TIMEOUT.as_secs())))
        }
        // No COMMIT was sent: the dropped transaction rolls back.
        Err(_) => Err(OpsError::Timeout { env, operation, seconds: QUERY_TIMEOUT.as_secs() }),
    }
}

fn write_error(env: EnvName, operation: &'static str, e: sqlx::Error) -> OpsError {
    if let sqlx::Error::Database(db) = &e {
        // query_canceled: the statement_timeout fired; the transaction was rolled back.
        if db.code().as_deref() == Some("57014") {
            return OpsError::WriteTimedOut { env, operation, seconds: WRITE_STATEMENT_TIMEOUT.as_secs() };
        }
    }
    db_error(env, operation)(e)
}

fn labelled(mut row: ExtractionRow) -> ExtractionRow {
    row.status = status::label(row.status_id);
    row
}

impl Ops {
    /// Answers when the environment's database answers `SELECT 1` (for /ready).
    pub async fn ping(&self, env: EnvName) -> Result<(), OpsError> {
        let pool = self.read_pool(env, "the readiness check")?;
        timed(env, "SELECT 1", sqlx::query("SELECT 1").execute(pool)).await.map(|_| ())
    }

    /// Counts, oldest waiting ages and completions per minute of one environment (three queries,
    /// all served by indexes: an index-only scan of (status_id, document_source) over the
    /// non-final statuses 1, 2, 3, 4, 6, two index look-ups of the oldest waiting rows, and a range
    /// scan of the status-5 partial index over only the newest minute or two; status-5 counts and
    /// the closed minutes are kept by [`crate::completions`]). Statuses 1-6 are those of the
    /// extraction_status table.
    pub async fn overview(&self, env: EnvName) -> Result<EnvOverview, OpsError> {
        let pool = self.read_pool(env, "the overview")?;
        let counts: Vec<(i32, Option<String>, i64)> = timed(
            env,
            "counting rows per status and source",
            sqlx::query_as(
                // Status 5 (most of the table) comes from the completions kept by crate::completions.
                "SELECT status_id, document_source::text, count(*) FROM extraction_queue
                  WHERE status_id IN (1, 2, 3, 4, 6) GROUP BY 1, 2 ORDER BY 1, 2",
            )
            .fetch_all(pool),
        )
        .await?;
        let (extraction, ocr, last_change): (Option<f64>, Option<f64>, Option<DateTime<Utc>>) = timed(
            env,
            "reading the oldest waiting rows",
            sqlx::query_as(
                "SELECT (SELECT extract(epoch FROM now() - min(created_at))::float8 FROM extraction_queue WHERE status_id = 1),
                        (SELECT extract(epoch FROM now() - min(created_at))::float8 FROM extraction_queue WHERE status_id = 3),
                        (SELECT max(updated_at) FROM extraction_queue)",
            )
            .fetch_one(pool),
        )
        .await?;
        let completions = self.completions.read(pool, env).await?;
        let mut counts = counts;
        counts.extend(completions.completed_by_source.iter().filter(|(_, n)| **n > 0).map(|(s, n)| (status::DONE, Some(s.clone()), i64::try_from(*n).unwrap_or(i64::MAX))));
        counts.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        Ok(EnvOverview {
            env,
            counts: counts
                .into_iter()
                .map(|(status_id, source, count)| StatusCount {
                    status_id,
                    status: status::label(status_id),
                    document_source: source.unwrap_or_default(),
                    count: u64::try_from(count).unwrap_or(0),
                })
                .collect(),
            oldest_waiting_seconds: OldestWaiting { extraction: extraction.map(|s| s.max(0.0)), ocr: ocr.map(|s| s.max(0.0)) },
            completions_per_minute: completions.per_minute,
            last_change,
        })
    }

    /// A page of rows, newest first (created_at, id descending), filtered by status and source.
    pub async fn list(&self, env: EnvName, filter: &ListFilter) -> Result<Page, OpsError> {
        let pool = self.read_pool(env, "the jobs list")?;
        let limit = filter.limit.clamp(1, MAX_LIMIT);
        let mut q = QueryBuilder::new(format!("SELECT {ROW_COLUMNS} FROM extraction_queue WHERE true"));
        if let Some(status) = filter.status_id {
            q.push(" AND status_id = ").push_bind(status);
        }
        if let Some(source) = &filter.document_source {
            q.push(" AND document_source = ").push_bind(source.clone());
        }
        if let Some(after) = filter.after {
            q.push(" AND (created_at, id) < (").push_bind(after.created_at).push(", ").push_bind(after.id).push(")");
        }
        // One more than asked, to know whether there is a next page.
        q.push(" ORDER BY created_at DESC, id DESC LIMIT ").push_bind(i64::from(limit) + 1);
        let mut rows: Vec<ExtractionRow> =
            timed(env, "listing rows", q.build_query_as::<ExtractionRow>().fetch_all(pool)).await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = match (more, rows.last()) {
            (true, Some(last)) => Some(Cursor { created_at: last.created_at, id: last.id }.encode()),
            _ => None,
        };
        Ok(Page { rows: rows.into_iter().map(labelled).collect(), next_cursor })
    }

    /// One row with its details, or NotFound.
    pub async fn get(&self, env: EnvName, id: Uuid) -> Result<ExtractionDetail, OpsError> {
        let pool = self.read_pool(env, "reading a row")?;
        fetch_detail(pool, env, id).await?.ok_or(OpsError::NotFound { env, id })
    }

    /// Validates and queues a document (status 1), unless an identical one is already waiting or
    /// in progress: then that row is returned with `duplicate: true`.
    pub async fn enqueue(&self, env: EnvName, request: &NewExtraction) -> Result<Enqueued, OpsError> {
        let valid = request.validate().map_err(OpsError::Invalid)?;
        let pool = self.pool(env, "enqueue")?;
        let check = format!("check with registrectl status, or the list of {env}, before queuing it again");
        let (id, duplicate): (Uuid, bool) = write(pool, env, "ops_enqueue", check, |conn| {
            Box::pin(
                sqlx::query_as("SELECT id, duplicate FROM ops_enqueue($1, $2, $3, $4, $5, $6, $7)")
                    .bind(valid.source.as_str())
                    .bind(valid.document_number.clone())
                    .bind(valid.document_number_normalized.clone())
                    .bind(valid.circonscription_fonciere.clone())
                    .bind(valid.cadastre.clone())
                    .bind(valid.designation_secondaire.clone())
                    .bind(valid.acte_type.clone())
                    .fetch_one(conn),
            )
        })
        .await?;
        let row = fetch_detail(pool, env, id).await?.ok_or(OpsError::NotFound { env, id })?;
        Ok(Enqueued { row, duplicate })
    }

    /// Erreur (4) → waiting: 3 when the PDF is stored and only OCR failed, else 1; attempts reset.
    /// Any other status: Conflict with the reason.
    pub async fn retry(&self, env: EnvName, id: Uuid) -> Result<ExtractionDetail, OpsError> {
        let pool = self.pool(env, "retry")?;
        let (outcome, status): (String, Option<i32>) = write(pool, env, "ops_retry", show_check(env, id), |conn| {
            Box::pin(sqlx::query_as("SELECT outcome, status_id FROM ops_retry($1)").bind(id).fetch_one(conn))
        })
        .await?;
        self.after_change(pool, env, id, &outcome, status, |s| {
            format!("only a row in Erreur (4) can be retried; this one is {s} ({})", status::label(s))
        })
        .await
    }

    /// Waiting (1, 3) or in progress (2, 6) → Erreur (4) with `reason` as error_message; the claim
    /// token is cleared so the worker holding the row cannot complete it. Final rows: Conflict.
    pub async fn cancel(&self, env: EnvName, id: Uuid, reason: &str) -> Result<ExtractionDetail, OpsError> {
        let pool = self.pool(env, "cancel")?;
        let reason = reason.to_string();
        let (outcome, status): (String, Option<i32>) = write(pool, env, "ops_cancel", show_check(env, id), |conn| {
            Box::pin(sqlx::query_as("SELECT outcome, status_id FROM ops_cancel($1, $2)").bind(id).bind(reason).fetch_one(conn))
        })
        .await?;
        self.after_change(pool, env, id, &outcome, status, |s| {
            format!("row is final ({s}, {}): only waiting or in-progress rows can be cancelled", status::label(s))
        })
        .await
    }

    async fn after_change(
        &self,
        pool: &PgPool,
        env: EnvName,
        id: Uuid,
        outcome: &str,
        status: Option<i32>,
        refused: impl FnOnce(i32) -> String,
    ) -> Result<ExtractionDetail, OpsError> {
        match (outcome, status) {
            ("not_found", _) => Err(OpsError::NotFound { env, id }),
            ("refused", Some(s)) => Err(OpsError::Conflict { status_id: s, reason: refused(s) }),
            _ => fetch_detail(pool, env, id).await?.ok_or(OpsError::NotFound { env, id }),
        }
    }
}

/// What one pass of the stuck-row repairs did to an environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Requeued {
    /// Rows with an expired lease given back by the reaper (queue_reap_expired).
    pub reaped: u64,
    /// Lease-less rows in status 2 older than the threshold, back to 1 (or 4 on their last attempt).
    pub stuck_extraction: u64,
    /// Lease-less rows in status 6 older than the threshold, back to 3 (or 4).
    pub stuck_ocr: u64,
}

impl Ops {
    /// Runs the reaper (expired leases back to waiting, the attempt counted), then requeues rows
    /// in status 2 or 6 that have no lease (claimed by an older system) and have not moved for
    /// `older_than`, saying `by` whom in error_message. Both are single SQL functions (crates/queue/functions/reap.sql, ops.sql).
    pub async fn requeue_stuck(
        &self,
        env: EnvName,
        older_than: std::time::Duration,
        default_max_attempts: u32,
        by: &str,
    ) -> Result<Requeued, OpsError> {
        let pool = self.pool(env, "requeuing stuck rows")?;
        let max = i32::try_from(default_max_attempts).unwrap_or(i32::MAX);
        let check = || format!("check with registrectl status --environment {env}; a second run repeats nothing already done");
        let reaped: i32 = write(pool, env, "queue_reap_expired", check(), |conn| {
            Box::pin(sqlx::query_scalar("SELECT queue_reap_expired($1)").bind(max).fetch_one(conn))
        })
        .await?;
        let older_ms = i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX);
        let by = by.to_string();
        let (extraction, ocr): (i32, i32) = write(pool, env, "ops_requeue_stuck", check(), |conn| {
            Box::pin(
                sqlx::query_as("SELECT extraction, ocr FROM ops_requeue_stuck($1, $2, $3)")
                    .bind(older_ms)
                    .bind(max)
                    .bind(by)
                    .fetch_one(conn),
            )
        })
        .await?;
        let n = |v: i32| u64::try_from(v).unwrap_or(0);
        Ok(Requeued { reaped: n(reaped), stuck_extraction: n(extraction), stuck_ocr: n(ocr) })
    }

    /// Retries every Erreur row (optionally of one source, failed since a time), in batches of
    /// `batch` rows, each its own bounded transaction (ops_retry_errors with a LIMIT), until a batch
    /// retries fewer than `batch`. Returns what was done; a batch that fails or whose outcome is
    /// unknown stops the run with [`OpsError::BulkStopped`], saying how many were retried before.
    pub async fn retry_errors(
        &self,
        env: EnvName,
        source: Option<&str>,
        since: Option<DateTime<Utc>>,
        batch: u32,
    ) -> Result<BulkRetry, OpsError> {
        let pool = self.pool(env, "retry --errors")?;
        let limit = i32::try_from(batch.max(1)).unwrap_or(i32::MAX);
        let mut done = BulkRetry::default();
        loop {
            let source = source.map(str::to_string);
            let check = format!("check with registrectl status --environment {env} (the rows retried so far are in status 1 or 3)");
            let n: i32 = write(pool, env, "ops_retry_errors", check, |conn| {
                Box::pin(sqlx::query_scalar("SELECT ops_retry_errors($1, $2, $3)").bind(source).bind(since).bind(limit).fetch_one(conn))
            })
            .await
            .map_err(|e| OpsError::BulkStopped { retried: done.retried, batches: done.batches, source: Box::new(e) })?;
            done.batches += 1;
            done.retried += u64::try_from(n).unwrap_or(0);
            if n < limit {
                return Ok(done);
            }
        }
    }
}

/// Rows retried per batch by `registrectl retry --errors` (each batch one short transaction).
pub const RETRY_BATCH: u32 = 500;

/// What a bulk retry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct BulkRetry {
    pub retried: u64,
    /// Transactions committed (the last one retried fewer than the batch size).
    pub batches: u32,
}

/// "Check with registrectl show <id>": what an operator runs when a write's outcome is unknown.
fn show_check(env: EnvName, id: Uuid) -> String {
    format!("check with registrectl show {id} --environment {env}")
}

#[derive(sqlx::FromRow)]
struct DetailExtra {
    document_number_normalized: Option<String>,
    fetched_as: Option<String>,
    processing_started_at: Option<DateTime<Utc>>,
    lease_expires_at: Option<DateTime<Utc>>,
    next_attempt_at: Option<DateTime<Utc>>,
    ocr_started_at: Option<DateTime<Utc>>,
    ocr_completed_at: Option<DateTime<Utc>>,
    ocr_lease_expires_at: Option<DateTime<Utc>>,
    ocr_last_error_at: Option<DateTime<Utc>>,
    file_content_excerpt: Option<String>,
    file_content_chars: Option<i32>,
    boosted_file_content_excerpt: Option<String>,
    boosted_file_content_chars: Option<i32>,
    index_data: Option<serde_json::Value>,
}

async fn fetch_detail(pool: &PgPool, env: EnvName, id: Uuid) -> Result<Option<ExtractionDetail>, OpsError> {
    let sql = format!(
        "SELECT {ROW_COLUMNS}, document_number_normalized::text AS document_number_normalized, fetched_as, processing_started_at,
                lease_expires_at, next_attempt_at, ocr_started_at, ocr_completed_at, ocr_lease_expires_at,
                ocr_last_error_at,
                left(file_content, {EXCERPT_CHARS}) AS file_content_excerpt,
                length(file_content)::int AS file_content_chars,
                left(boosted_file_content, {EXCERPT_CHARS}) AS boosted_file_content_excerpt,
                length(boosted_file_content)::int AS boosted_file_content_chars,
                index_data
           FROM extraction_queue WHERE id = $1"
    );
    let row = timed(env, "reading a row", sqlx::query(&sql).bind(id).fetch_optional(pool)).await?;
    let Some(row) = row else { return Ok(None) };
    use sqlx::FromRow;
    let base = ExtractionRow::from_row(&row).map_err(db_error(env, "decoding a row"))?;
    let extra = DetailExtra::from_row(&row).map_err(db_error(env, "decoding a row"))?;
    Ok(Some(ExtractionDetail {
        row: labelled(base),
        document_number_normalized: extra.document_number_normalized,
        fetched_as: extra.fetched_as,
        processing_started_at: extra.processing_started_at,
        lease_expires_at: extra.lease_expires_at,
        next_attempt_at: extra.next_attempt_at,
        ocr_started_at: extra.ocr_started_at,
        ocr_completed_at: extra.ocr_completed_at,
        ocr_lease_expires_at: extra.ocr_lease_expires_at,
        ocr_last_error_at: extra.ocr_last_error_at,
        file_content_excerpt: extra.file_content_excerpt,
        file_content_chars: extra.file_content_chars,
        boosted_file_content_excerpt: extra.boosted_file_content_excerpt,
        boosted_file_content_chars: extra.boosted_file_content_chars,
        index_data: extra.index_data,
    }))
}

/// A row that changed (inserted, or its status or content updated) and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ChangedRow {
    pub id: Uuid,
    pub updated_at: DateTime<Utc>,
}

impl Ops {
    /// The rows updated at or after `since`, newest first, at most `limit` (served by the
    /// updated_at index of migration 0050). The dashboard compares them with the rows it shows, so
    /// it re-reads a row's detail only when that row changed.
    pub async fn changed_since(&self, env: EnvName, since: DateTime<Utc>, limit: u32) -> Result<Vec<ChangedRow>, OpsError> {
        let pool = self.read_pool(env, "the changed rows")?;
        timed(
            env,
            "reading the changed rows",
            sqlx::query_as("SELECT id, updated_at FROM extraction_queue WHERE updated_at >= $1 ORDER BY updated_at DESC LIMIT $2")
                .bind(since)
                .bind(i64::from(limit))
                .fetch_all(pool),
        )
        .await
    }
}
