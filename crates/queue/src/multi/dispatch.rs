//! Environment dispatch: [`EnvQueue`], one environment's queue whichever backend reaches it
//! (Postgres directly or Supabase REST, as the environment's configuration names), every call
//! passed on to that backend unchanged.

use registre_config::{Backend, EnvName, Environment, QueueConfig};
use uuid::Uuid;

use crate::*;

/// One environment's queue, whichever backend reaches it.
#[derive(Debug)]
pub enum EnvQueue {
    Postgres(PgQueue),
    Rest(RestQueue),
}

impl EnvQueue {
    /// The backend the environment's configuration names (lazy: nothing is contacted yet).
    /// `max_connections` bounds the Postgres pool: every user of the queue in this process shares
    /// it (QUEUE_PG_POOL_SIZE, `config.pg_pool_size`, sizes it for all of them).
    pub fn connect(env: &Environment, config: &QueueConfig, max_connections: u32) -> Result<EnvQueue, QueueError> {
        let settings = QueueSettings::from_config(config);
        match &env.backend {
            Backend::Database { url } => {
                PgQueue::connect_lazy(env.name, url, settings, max_connections, config.call_timeout).map(EnvQueue::Postgres)
            }
            Backend::Supabase { url, service_key } => RestQueue::new(env.name, url, service_key, settings).map(EnvQueue::Rest),
        }
    }
}

macro_rules! delegate {
    ($self:ident, $q:ident => $call:expr) => {
        match $self {
            EnvQueue::Postgres($q) => $call,
            EnvQueue::Rest($q) => $call,
        }
    };
}

impl Queue for EnvQueue {
    fn env(&self) -> EnvName {
        delegate!(self, q => q.env())
    }
    async fn claim_extraction(&self, worker_id: &str, claim_token: Uuid) -> Result<Option<Job>, QueueError> {
        delegate!(self, q => q.claim_extraction(worker_id, claim_token).await)
    }
    async fn claim_ocr(&self, worker_id: &str, source: DocumentSource, claim_token: Uuid) -> Result<Option<Job>, QueueError> {
        delegate!(self, q => q.claim_ocr(worker_id, source, claim_token).await)
    }
    async fn release_claim(&self, claim_token: Uuid) -> Result<u64, QueueError> {
        delegate!(self, q => q.release_claim(claim_token).await)
    }
    async fn release_after_crash(&self, job: &Job, error: &str, max_crashes: i32) -> Result<CrashOutcome, QueueError> {
        delegate!(self, q => q.release_after_crash(job, error, max_crashes).await)
    }
    async fn acquire_account(&self, holder: &str, lease_ms: i32) -> Result<Option<LentAccount>, QueueError> {
        delegate!(self, q => q.acquire_account(holder, lease_ms).await)
    }
    async fn renew_account(&self, id: Uuid, holder: &str, lease_ms: i32) -> Result<Transition, QueueError> {
        delegate!(self, q => q.renew_account(id, holder, lease_ms).await)
    }
    async fn release_account(&self, id: Uuid, holder: &str) -> Result<Transition, QueueError> {
        delegate!(self, q => q.release_account(id, holder).await)
    }
    async fn report_account_login(&self, id: Uuid, success: bool) -> Result<(), QueueError> {
        delegate!(self, q => q.report_account_login(id, success).await)
    }
    async fn renew(&self, job: &Job) -> Result<Transition, QueueError> {
        delegate!(self, q => q.renew(job).await)
    }
    async fn complete_extraction(&self, job: &Job, supabase_path: &str, fetched_as: Option<&str>) -> Result<Transition, QueueError> {
        delegate!(self, q => q.complete_extraction(job, supabase_path, fetched_as).await)
    }
    async fn complete_ocr_with(&self, job: &Job, texts: OcrTexts<'_>) -> Result<Transition, QueueError> {
        delegate!(self, q => q.complete_ocr_with(job, texts).await)
    }
    async fn fail(&self, job: &Job, error: &str) -> Result<FailOutcome, QueueError> {
        delegate!(self, q => q.fail(job, error).await)
    }
    async fn fail_final(&self, job: &Job, error: &str) -> Result<FailOutcome, QueueError> {
        delegate!(self, q => q.fail_final(job, error).await)
    }
    async fn release(&self, job: &Job) -> Result<Transition, QueueError> {
        delegate!(self, q => q.release(job).await)
    }
    async fn reap_expired(&self) -> Result<u64, QueueError> {
        delegate!(self, q => q.reap_expired().await)
    }
    async fn count_waiting(&self) -> Result<WaitingCounts, QueueError> {
        delegate!(self, q => q.count_waiting().await)
    }
}
