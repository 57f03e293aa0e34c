//! Every configured environment's queue behind one poller: claims go prod → staging → dev and
//! return the first row found, tagged with its environment; transitions go back to the job's
//! environment. An environment that fails (down, unreachable, not migrated, too slow) is logged
//! and taken off the claim path; from its retry time on (capped exponential backoff,
//! QUEUE_ENV_RETRY_MAX_MS) a background probe tries it again and puts it back once it answers, so
//! one environment being down never stalls the others. Every call is bounded by
//! QUEUE_CALL_TIMEOUT_MS. Claim rounds also reap expired leases, at most once per
//! QUEUE_HEARTBEAT_MS per environment.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use registre_config::{Backend, EnvName, Environment, QueueConfig};
use registre_runtime::Backoff;
use tokio_util::sync::CancellationToken;

use crate::*;

/// One environment's queue, whichever backend reaches it.
#[derive(Debug)]
pub enum EnvQueue {
    Postgres(PgQueue),
    Rest(RestQueue),
}

impl EnvQueue {
    /// The backend the environment's configuration names (lazy: nothing is contacted yet).
    /// `max_connections` bounds the Postgres pool (the number of workers sharing it is enough).
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
    async fn claim_extraction(&self, worker_id: &str) -> Result<Option<Job>, QueueError> {
        delegate!(self, q => q.claim_extraction(worker_id).await)
    }
    async fn claim_ocr(&self, worker_id: &str, source: DocumentSource) -> Result<Option<Job>, QueueError> {
        delegate!(self, q => q.claim_ocr(worker_id, source).await)
    }
    async fn renew(&self, job: &Job) -> Result<Transition, QueueError> {
        delegate!(self, q => q.renew(job).await)
    }
    async fn complete_extraction(&self, job: &Job, supabase_path: &str) -> Result<Transition, QueueError> {
        delegate!(self, q => q.complete_extraction(job, supabase_path).await)
    }
    async fn complete_ocr(&self, job: &Job, file_content: &str, boosted_file_content: &str) -> Result<Transition, QueueError> {
        delegate!(self, q => q.complete_ocr(job, file_content, boosted_file_content).await)
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

struct Health {
    backoff: Backoff,
    /// Set while the environment is down: a background probe tries it again from then on.
    retry_at: Option<Instant>,
    probing: bool,
    last_reap: Option<Instant>,
}

struct Slot {
    queue: EnvQueue,
    health: Mutex<Health>,
    call_timeout: Duration,
}

impl Slot {
    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        // A panic while holding this lock cannot leave Health inconsistent: keep using it.
        self.health.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Up: claims may use it. A down environment is never called on the claim path.
    fn ready(&self) -> bool {
        self.health().retry_at.is_none()
    }

    /// Down, its retry time has come and no probe runs yet: the caller starts one.
    fn take_probe(&self) -> bool {
        let mut h = self.health();
        let due = !h.probing && h.retry_at.is_some_and(|at| Instant::now() >= at);
        if due {
            h.probing = true;
        }
        due
    }

    fn reap_due(&self, every: Duration) -> bool {
        let mut h = self.health();
        let due = h.last_reap.is_none_or(|at| at.elapsed() >= every);
        if due {
            h.last_reap = Some(Instant::now());
        }
        due
    }

    fn mark_down(&self, err: &QueueError) {
        let env = self.queue.env();
        let delay = {
            let mut h = self.health();
            let delay = h.backoff.next_delay();
            h.retry_at = Some(Instant::now() + delay);
            h.probing = false;
            delay
        };
        tracing::warn!(%env, "⚠️ {err} (queue of {env} skipped, next try in {:.1} s)", delay.as_secs_f64());
    }

    fn mark_up(&self) {
        let was_down = {
            let mut h = self.health();
            h.backoff.reset();
            h.probing = false;
            h.retry_at.take().is_some()
        };
        if was_down {
            let env = self.queue.env();
            tracing::info!(%env, "✅ queue of {env} reachable again");
        }
    }

    /// Runs one call with the call timeout; failures mark the environment down, successes up.
    async fn guarded<T>(&self, operation: &'static str, call: impl Future<Output = Result<T, QueueError>>) -> Result<T, QueueError> {
        let result = match tokio::time::timeout(self.call_timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(QueueError::Timeout {
                env: self.queue.env(),
                operation,
                timeout_ms: u64::try_from(self.call_timeout.as_millis()).unwrap_or(u64::MAX),
            }),
        };
        match &result {
            Ok(_) => self.mark_up(),
            Err(e) => self.mark_down(e),
        }
        result
    }

    /// Tries a down environment again off the claim path (reaping is the probe: it needs the
    /// database and the functions), so a slow or refusing environment never delays the others.
    fn spawn_probe(self: &Arc<Self>) {
        let slot = Arc::clone(self);
        tokio::spawn(async move {
            if let Ok(n) = slot.guarded("reap expired leases", slot.queue.reap_expired()).await {
                slot.health().last_reap = Some(Instant::now());
                if n > 0 {
                    let env = slot.queue.env();
                    tracing::warn!(%env, "♻️ {n} row(s) of {env} whose lease expired went back to waiting");
                }
            }
        });
    }
}

#[derive(Clone, Copy)]
enum Claim {
    Extraction,
    Ocr(DocumentSource),
}

pub struct MultiQueue {
    slots: Vec<Arc<Slot>>,
    config: QueueConfig,
}

impl std::fmt::Debug for MultiQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultiQueue").field("envs", &self.envs()).field("config", &self.config).finish()
    }
}

impl MultiQueue {
    /// Polls `queues` in environment order (prod, staging, dev), whatever order they come in.
    pub fn new(mut queues: Vec<EnvQueue>, config: QueueConfig) -> MultiQueue {
        queues.sort_by_key(|q| q.env());
        let min = Duration::from_secs(1).min(config.env_retry_max);
        let slots = queues
            .into_iter()
            .map(|queue| {
                Arc::new(Slot {
                    queue,
                    health: Mutex::new(Health {
                        backoff: Backoff::new(min, config.env_retry_max),
                        retry_at: None,
                        probing: false,
                        last_reap: None,
                    }),
                    call_timeout: config.call_timeout,
                })
            })
            .collect();
        MultiQueue { slots, config }
    }

    /// One lazy backend per environment (nothing is contacted until the first claim).
    pub fn connect(environments: &[Environment], config: &QueueConfig, max_connections: u32) -> Result<MultiQueue, QueueError> {
        let queues = environments
            .iter()
            .map(|env| EnvQueue::connect(env, config, max_connections))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MultiQueue::new(queues, config.clone()))
    }

    pub fn envs(&self) -> Vec<EnvName> {
        self.slots.iter().map(|s| s.queue.env()).collect()
    }

    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// Whether `env` is currently considered reachable (not waiting for its retry time).
    pub fn is_available(&self, env: EnvName) -> bool {
        self.slots.iter().any(|s| s.queue.env() == env && s.ready())
    }

    fn slot(&self, env: EnvName) -> Result<&Arc<Slot>, QueueError> {
        self.slots.iter().find(|s| s.queue.env() == env).ok_or(QueueError::UnknownEnvironment { env })
    }

    async fn claim(&self, worker_id: &str, kind: Claim) -> Option<Job> {
        for slot in &self.slots {
            if !slot.ready() {
                if slot.take_probe() {
                    slot.spawn_probe();
                }
                continue;
            }
            if slot.reap_due(self.config.heartbeat) {
                match slot.guarded("reap expired leases", slot.queue.reap_expired()).await {
                    Ok(0) => {}
                    Ok(n) => {
                        let env = slot.queue.env();
                        tracing::warn!(%env, "♻️ {n} row(s) of {env} whose lease expired went back to waiting");
                    }
                    Err(_) => continue,
                }
            }
            let claimed = match kind {
                Claim::Extraction => slot.guarded("claim for extraction", slot.queue.claim_extraction(worker_id)).await,
                Claim::Ocr(source) => slot.guarded("claim for OCR", slot.queue.claim_ocr(worker_id, source)).await,
            };
            if let Ok(Some(job)) = claimed {
                return Some(job);
            }
        }
        None
    }

    /// One round over the environments: the first status-1 row found, or None.
    pub async fn claim_extraction(&self, worker_id: &str) -> Option<Job> {
        self.claim(worker_id, Claim::Extraction).await
    }

    /// One round over the environments: the first status-3 row of `source` found, or None.
    pub async fn claim_ocr(&self, worker_id: &str, source: DocumentSource) -> Option<Job> {
        self.claim(worker_id, Claim::Ocr(source)).await
    }

    /// Claims rounds every QUEUE_POLL_INTERVAL_MS until a row comes, or None once `stop` fires.
    pub async fn next_extraction(&self, worker_id: &str, stop: &CancellationToken) -> Option<Job> {
        self.wait_for(worker_id, Claim::Extraction, stop).await
    }

    /// Like [`MultiQueue::next_extraction`] for OCR rows of `source`.
    pub async fn next_ocr(&self, worker_id: &str, source: DocumentSource, stop: &CancellationToken) -> Option<Job> {
        self.wait_for(worker_id, Claim::Ocr(source), stop).await
    }

    async fn wait_for(&self, worker_id: &str, kind: Claim, stop: &CancellationToken) -> Option<Job> {
        loop {
            if stop.is_cancelled() {
                return None;
            }
            if let Some(job) = self.claim(worker_id, kind).await {
                return Some(job);
            }
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = tokio::time::sleep(self.config.poll_interval) => {}
            }
        }
    }

    pub async fn renew(&self, job: &Job) -> Result<Transition, QueueError> {
        let slot = self.slot(job.env)?;
        slot.guarded("renew lease", slot.queue.renew(job)).await
    }

    pub async fn complete_extraction(&self, job: &Job, supabase_path: &str) -> Result<Transition, QueueError> {
        let slot = self.slot(job.env)?;
        slot.guarded("complete extraction", slot.queue.complete_extraction(job, supabase_path)).await
    }

    pub async fn complete_ocr(&self, job: &Job, file_content: &str, boosted_file_content: &str) -> Result<Transition, QueueError> {
        let slot = self.slot(job.env)?;
        slot.guarded("complete OCR", slot.queue.complete_ocr(job, file_content, boosted_file_content)).await
    }

    pub async fn fail(&self, job: &Job, error: &str) -> Result<FailOutcome, QueueError> {
        let slot = self.slot(job.env)?;
        slot.guarded("fail", slot.queue.fail(job, error)).await
    }

    /// The row's data was rejected: 2 → 4 at once (see [`Queue::fail_final`]).
    pub async fn fail_final(&self, job: &Job, error: &str) -> Result<FailOutcome, QueueError> {
        let slot = self.slot(job.env)?;
        slot.guarded("fail (final)", slot.queue.fail_final(job, error)).await
    }

    pub async fn release(&self, job: &Job) -> Result<Transition, QueueError> {
        let slot = self.slot(job.env)?;
        slot.guarded("release", slot.queue.release(job)).await
    }

    /// Status-3 rows per source, summed over the reachable environments (one grouped query each;
    /// an environment that is down counts as none and is logged).
    pub async fn count_waiting(&self) -> WaitingCounts {
        let mut total = WaitingCounts::new();
        for slot in &self.slots {
            if !slot.ready() {
                if slot.take_probe() {
                    slot.spawn_probe();
                }
                continue;
            }
            if let Ok(counts) = slot.guarded("count waiting rows", slot.queue.count_waiting()).await {
                for (source, n) in counts {
                    *total.entry(source).or_default() += n;
                }
            }
        }
        total
    }

    /// Renews `job`'s lease every QUEUE_HEARTBEAT_MS until the returned heartbeat is dropped.
    pub fn keep_alive(self: &Arc<Self>, job: &Job) -> Heartbeat {
        let queue = Arc::clone(self);
        Heartbeat::spawn(job.clone(), self.config.heartbeat, move |job| {
            let queue = queue.clone();
            async move { queue.renew(&job).await }
        })
    }
}
