//! One registre worker: while the process is not shutting down and its capacity lease is held,
//! claim a status-1 row, keep its lease alive, fetch the document (bounded by
//! EXTRACTION_TIMEOUT), check it is a PDF, upload it, and complete the row (→ 3, or → 5 for
//! plan_cadastraux). Failures are recorded on the row with a readable message and the worker goes
//! on; no free registry account releases the row without counting an attempt, and so does a
//! crashed browser, up to MAX_BROWSER_CRASHES crashes on one row, which then ends in 4 (Erreur)
//! with that reason (a document that kills the browser never loops forever). A transition the
//! database refuses for this row's data (a constraint, a value it cannot store) fails the row
//! with that error; only an unreachable environment makes the worker retry. On shutdown the current job is finished if it completes within
//! REGISTRE_SHUTDOWN_GRACE_MS, otherwise released; then the capacity lease is released.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use registre_capacity::Lease;
use registre_fetch::{validate_pdf, DocumentRequest, DocumentSource, FetchError, Fetcher, NotAPdf};
use registre_queue::{settle, status, CrashOutcome, FailOutcome, Job, QueueError, Settled, Transition};
use registre_runtime::Backoff;
use registre_storage::{Bytes, ObjectPath, StorageError};
use tokio_util::sync::CancellationToken;

use crate::board::WorkerState;
use crate::{Services, WorkerSettings};

/// Why a job did not produce a stored PDF. Display is the `error_message` written on the row.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The row cannot be worked on as it is (unknown document_source, empty number...).
    #[error("{0}")]
    BadRow(String),
    /// The source has no such document.
    #[error("document {number} ({source_name}) not found: {detail}")]
    NotFound { number: String, source_name: String, detail: String },
    /// The bytes are not a PDF.
    #[error("not a PDF: {origin}: {reason}")]
    NotAPdf { origin: String, reason: NotAPdf },
    #[error("{0}")]
    Fetch(FetchError),
    #[error("upload to storage failed: {0}")]
    Storage(StorageError),
}

impl JobError {
    fn from_fetch(request: &DocumentRequest, error: FetchError) -> JobError {
        match error {
            FetchError::NotFound { detail, .. } => JobError::NotFound {
                number: request.document_number.clone(),
                source_name: request.document_source.to_string(),
                detail,
            },
            FetchError::NotAPdf { source_name, reason } => JobError::NotAPdf { origin: source_name, reason },
            other => JobError::Fetch(other),
        }
    }

    /// The registry rejected the row's own data (its error cell, an option it does not offer):
    /// the row goes to Erreur at once instead of burning its retries.
    pub fn is_final(&self) -> bool {
        matches!(self, JobError::Fetch(e) if e.is_final())
    }

    /// A crashed browser or no free account says nothing about the document: the row is released
    /// without counting an attempt. Everything else counts one.
    pub fn counts_as_attempt(&self) -> bool {
        match self {
            JobError::Fetch(e) => e.counts_as_attempt(),
            _ => true,
        }
    }

    /// The browser crashed (counted per row: see [`crate::MAX_BROWSER_CRASHES`]).
    pub fn is_browser_crash(&self) -> bool {
        matches!(self, JobError::Fetch(FetchError::BrowserCrashed(_)))
    }
}

/// The fetcher's request for a claimed row.
pub fn request_for(job: &Job) -> Result<DocumentRequest, JobError> {
    let source: DocumentSource = job.document_source.parse().map_err(|e| JobError::BadRow(format!("{e}")))?;
    let number = job.document_number.trim();
    if number.is_empty() {
        return Err(JobError::BadRow(format!("row {} has an empty document_number", job.id)));
    }
    Ok(DocumentRequest {
        document_source: source,
        document_number: number.to_string(),
        circonscription_fonciere: job.circonscription_fonciere.clone(),
        cadastre: job.cadastre.clone(),
        designation_secondaire: job.designation_secondaire.clone(),
        acte_type: job.acte_type.clone(),
    })
}

/// How a claimed job ended, for the counters and the pause before the next claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Completed,
    Failed,
    /// Released without an attempt because of the fetcher (crash, no account): pause before claiming again.
    ReleasedFetcher,
    /// The row's lease was lost (reaped or taken over): counted `lost` in registre_jobs_total.
    Lost,
    /// Released for the shutdown, or the transition could not be recorded.
    Other,
}

/// What came out of the work on one job.
enum Step {
    Done(Result<Stored, JobError>),
    /// The row's lease was lost (reaped, perhaps claimed by another worker): drop the work.
    Lost,
    /// Shutdown, and the job did not finish within the grace period.
    GraceOver,
}

/// A document in storage, waiting for its row's completion.
struct Stored {
    path: ObjectPath,
    /// What delivered it after the fetcher's fallbacks, recorded in the row's `fetched_as`.
    fetched_as: Option<String>,
}

pub(crate) struct Worker {
    pub id: String,
    pub services: Services,
    pub settings: Arc<WorkerSettings>,
    pub stop: CancellationToken,
    /// Fired once the start-up banner is out: no claim before.
    pub go: CancellationToken,
}

impl Worker {
    /// Works until shutdown, then releases the lease. `lease` was granted by the caller.
    pub async fn run(self, lease: Lease) {
        let board = self.services.board.clone();
        let fetcher = match (self.services.fetchers)() {
            Ok(fetcher) => fetcher,
            Err(e) => {
                tracing::error!(worker = %self.id, "❌ {} cannot start its fetcher: {e}", self.id);
                board.set_state(&self.id, WorkerState::Stopped { reason: format!("fetcher: {e}") });
                self.release_lease(lease).await;
                return;
            }
        };
        let mut pause = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        tokio::select! {
            _ = self.go.cancelled() => {}
            _ = self.stop.cancelled() => {}
        }
        loop {
            if self.stop.is_cancelled() {
                break;
            }
            if !lease.is_held() {
                board.set_state(&self.id, WorkerState::LeaseLost);
                if self.sleep(Duration::from_secs(1)).await {
                    break;
                }
                continue;
            }
            board.set_state(&self.id, WorkerState::Idle);
            let Some(job) = self.services.queue.next_extraction(&self.id, &self.stop).await else { break };
            match self.process(fetcher.as_ref(), job).await {
                Ended::Completed | Ended::Failed => pause.reset(),
                Ended::ReleasedFetcher => {
                    // Not the document's fault: give the fetcher (browser restart, accounts) time.
                    let delay = pause.next_delay();
                    board.set_state(&self.id, WorkerState::Idle);
                    if self.sleep(delay).await {
                        break;
                    }
                }
                Ended::Other | Ended::Lost => {}
            }
        }
        board.set_state(&self.id, WorkerState::Stopping);
        fetcher.shutdown().await;
        self.release_lease(lease).await;
        board.set_state(&self.id, WorkerState::Stopped { reason: "shutdown".into() });
    }

    /// Sleeps `d`; true if the shutdown fired meanwhile.
    async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            _ = self.stop.cancelled() => true,
            _ = tokio::time::sleep(d) => false,
        }
    }

    async fn release_lease(&self, lease: Lease) {
        match lease.release().await {
            Ok(_) => tracing::info!(worker = %self.id, "🔓 {} released its capacity lease", self.id),
            // The lease expires by itself after CAPACITY_LEASE_TTL_MS: nothing leaks.
            Err(e) => tracing::warn!(worker = %self.id, "capacity lease of {} not released ({e}): it expires by itself", self.id),
        }
    }

    async fn process(&self, fetcher: &dyn Fetcher, job: Job) -> Ended {
        let board = &self.services.board;
        let document = format!("{} {} ({})", job.document_source, job.document_number, job.env);
        board.set_state(&self.id, WorkerState::Working { document: document.clone(), since: Instant::now() });
        tracing::info!(worker = %self.id, job = %job.id, env = %job.env, "📥 {} working on {document}", self.id);
        let heartbeat = self.services.queue.keep_alive(&job);
        let lost = heartbeat.lost();
        let claimed = Instant::now();

        let work = self.fetch_and_store(fetcher, &job);
        tokio::pin!(work);
        let step = tokio::select! {
            result = &mut work => Step::Done(result),
            _ = lost.cancelled() => Step::Lost,
            _ = self.stop.cancelled() => {
                tracing::info!(worker = %self.id, "⏳ {} finishing {document} (up to {} ms) before stopping", self.id, self.settings.shutdown_grace.as_millis());
                tokio::select! {
                    result = &mut work => Step::Done(result),
                    _ = lost.cancelled() => Step::Lost,
                    _ = tokio::time::sleep(self.settings.shutdown_grace) => Step::GraceOver,
                }
            }
        };

        let ended = match step {
            Step::Done(Ok(stored)) => self.complete(&job, &document, &stored).await,
            Step::Done(Err(error)) if error.is_final() => self.fail_final(&job, &document, &error).await,
            Step::Done(Err(error)) if error.counts_as_attempt() => self.fail(&job, &document, &error.to_string()).await,
            Step::Done(Err(error)) if error.is_browser_crash() => self.crashed(&job, &document, &error).await,
            Step::Done(Err(error)) => {
                tracing::warn!(worker = %self.id, job = %job.id, "⚠️ {document}: {error}: releasing the row without counting an attempt");
                if self.release(&job, &document).await {
                    Ended::ReleasedFetcher
                } else {
                    Ended::Other
                }
            }
            Step::Lost => {
                tracing::warn!(worker = %self.id, job = %job.id, "⚠️ {document}: the row's lease was lost (reaped or taken over): work dropped");
                Ended::Lost
            }
            Step::GraceOver => {
                tracing::warn!(worker = %self.id, job = %job.id, "⏹️ {document} did not finish within the shutdown grace period");
                self.release(&job, &document).await;
                Ended::Other
            }
        };
        drop(heartbeat);
        let outcome = match ended {
            Ended::Completed => "completed",
            Ended::Failed => "failed",
            Ended::ReleasedFetcher | Ended::Other => "released",
            Ended::Lost => "lost",
        };
        registre_telemetry::job("extraction", outcome, claimed.elapsed());
        ended
    }

    /// Fetch (bounded by EXTRACTION_TIMEOUT), check the bytes are a PDF, upload.
    async fn fetch_and_store(&self, fetcher: &dyn Fetcher, job: &Job) -> Result<Stored, JobError> {
        let request = request_for(job)?;
        let timeout = self.settings.extraction_timeout;
        let started = Instant::now();
        let attempt = tokio::time::timeout(timeout, fetcher.fetch(&request)).await;
        registre_telemetry::fetch(started.elapsed());
        let fetched = match attempt {
            Ok(Ok(fetched)) => fetched,
            Ok(Err(e)) => return Err(JobError::from_fetch(&request, e)),
            Err(_) => {
                return Err(JobError::Fetch(FetchError::Timeout {
                    after: timeout,
                    what: format!("fetching {} (EXTRACTION_TIMEOUT)", request.describe()),
                }))
            }
        };
        validate_pdf(&fetched.bytes).map_err(|reason| JobError::NotAPdf { origin: fetched.source.clone(), reason })?;
        let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let path = ObjectPath::for_document(
            &job.document_source,
            &request.document_number,
            job.circonscription_fonciere.as_deref().unwrap_or(""),
            job.cadastre.as_deref().unwrap_or(""),
            unix_ms,
        )
        .map_err(JobError::Storage)?;
        self.services.storage.put_object(&path, Bytes::from(fetched.bytes)).await.map_err(JobError::Storage)?;
        Ok(Stored { path, fetched_as: fetched.fetched_as })
    }

    async fn complete(&self, job: &Job, document: &str, stored: &Stored) -> Ended {
        let supabase_path = stored.path.to_string();
        let fetched_as = stored.fetched_as.as_deref();
        let done = self.settle("complete", || self.services.queue.complete_extraction(job, &supabase_path, fetched_as)).await;
        match done {
            Settled::RowError(e) => {
                // The database refused this row's completion (its data, not the environment):
                // the row fails with the reason; the PDF stays stored and a retry stores it again.
                self.fail(job, document, &format!("stored as {supabase_path} but the queue refused the completion: {e}")).await
            }
            Settled::Done(Transition::Applied) => {
                let to = if job.document_source == "plan_cadastraux" { status::DONE } else { status::DOWNLOADED };
                self.services.board.count_done(&self.id);
                let via = fetched_as.map(|f| format!(", fetched as {f}")).unwrap_or_default();
                tracing::info!(worker = %self.id, job = %job.id, "✅ {} completed {document} → {supabase_path} (status {to}{via})", self.id);
                Ended::Completed
            }
            Settled::Done(Transition::NotOwner) => {
                tracing::warn!(worker = %self.id, job = %job.id, "⚠️ {document}: stored as {supabase_path} but the row was no longer ours (reaped or taken over): not completed");
                Ended::Lost
            }
            Settled::GaveUp => Ended::Other,
        }
    }

    /// The browser crashed on this document: released without an attempt, but counted on the row;
    /// at MAX_BROWSER_CRASHES the row ends in 4 with the reason.
    async fn crashed(&self, job: &Job, document: &str, error: &JobError) -> Ended {
        let message = error.to_string();
        let max = crate::MAX_BROWSER_CRASHES;
        match self.settle("release after a browser crash", || self.services.queue.release_after_crash(job, &message, max)).await {
            Settled::Done(CrashOutcome::Released { crashes }) => {
                self.services.board.count_released(&self.id);
                tracing::warn!(worker = %self.id, job = %job.id, "⚠️ {document}: {message}: released without counting an attempt (browser crash {crashes} of {max} on this row)");
                Ended::ReleasedFetcher
            }
            Settled::Done(CrashOutcome::Failed { crashes }) => {
                self.services.board.count_failed(&self.id);
                tracing::error!(worker = %self.id, job = %job.id, "❌ {document}: the browser crashed {crashes} times on it: status 4 (Erreur): {message}");
                Ended::ReleasedFetcher
            }
            Settled::Done(CrashOutcome::NotOwner) => Ended::Lost,
            Settled::RowError(e) => self.fail(job, document, &format!("{message} (and the crash could not be recorded: {e})")).await,
            Settled::GaveUp => Ended::Other,
        }
    }

    async fn fail(&self, job: &Job, document: &str, message: &str) -> Ended {
        match self.settle("fail", || self.services.queue.fail(job, message)).await {
            Settled::Done(FailOutcome::Retry { attempts, not_before }) => {
                self.services.board.count_failed(&self.id);
                tracing::warn!(worker = %self.id, job = %job.id, "❌ {document} failed (attempt {attempts}, retried after {}): {message}", not_before.format("%H:%M:%S"));
                Ended::Failed
            }
            Settled::Done(FailOutcome::Failed { attempts }) => {
                self.services.board.count_failed(&self.id);
                tracing::error!(worker = %self.id, job = %job.id, "❌ {document} failed for good after {attempts} attempt(s) (status 4): {message}");
                Ended::Failed
            }
            Settled::Done(FailOutcome::NotOwner) => self.failure_lost(job, document, "failed", message),
            Settled::RowError(e) => self.failure_unrecorded(job, document, "failed", message, e),
            Settled::GaveUp => Ended::Other,
        }
    }

    /// The row was no longer ours when its failure (`what`: failed, rejected) was to be written.
    fn failure_lost(&self, job: &Job, document: &str, what: &str, message: &str) -> Ended {
        tracing::warn!(worker = %self.id, job = %job.id, "⚠️ {document} {what} ({message}) but the row was no longer ours: nothing recorded");
        Ended::Lost
    }

    /// The failure could not be written: the lease's expiry gives the row back.
    fn failure_unrecorded(&self, job: &Job, document: &str, what: &str, message: &str, error: impl std::fmt::Display) -> Ended {
        tracing::error!(worker = %self.id, job = %job.id, "❌ {document} {what} ({message}) and the failure could not be recorded ({error}): the row returns to the queue when its lease expires");
        Ended::Other
    }

    /// The row's data was rejected by the registry: status 4 at once with the site's text.
    async fn fail_final(&self, job: &Job, document: &str, error: &JobError) -> Ended {
        let message = error.to_string();
        match self.settle("fail", || self.services.queue.fail_final(job, &message)).await {
            Settled::Done(FailOutcome::NotOwner) => self.failure_lost(job, document, "rejected", &message),
            Settled::Done(_) => {
                self.services.board.count_failed(&self.id);
                tracing::error!(worker = %self.id, job = %job.id, "❌ {document} rejected by the registry, not retried (status 4): {message}");
                Ended::Failed
            }
            Settled::RowError(e) => self.failure_unrecorded(job, document, "rejected", &message, e),
            Settled::GaveUp => Ended::Other,
        }
    }

    /// Gives the row back without counting an attempt; whether it applied.
    async fn release(&self, job: &Job, document: &str) -> bool {
        match self.settle("release", || self.services.queue.release(job)).await {
            Settled::Done(Transition::Applied) => {
                self.services.board.count_released(&self.id);
                tracing::info!(worker = %self.id, job = %job.id, "↩️ {} released {document} back to the queue (status 1, no attempt counted)", self.id);
                true
            }
            Settled::Done(Transition::NotOwner) | Settled::GaveUp => false,
            Settled::RowError(e) => {
                tracing::warn!(worker = %self.id, job = %job.id, "⚠️ {document}: release refused ({e}): the row returns to the queue when its lease expires");
                false
            }
        }
    }

    /// Runs a queue transition under the queue's one end-of-job retry policy ([`settle`]).
    async fn settle<T, F, Fut>(&self, operation: &str, call: F) -> Settled<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, QueueError>>,
    {
        settle(&self.id, operation, self.services.queue.config().lease_ttl, &self.stop, call).await
    }
}
