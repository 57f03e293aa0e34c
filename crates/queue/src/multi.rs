//! Every configured environment's queue behind one poller: claims go prod → staging → dev and
//! return the first row found, tagged with its environment; transitions go back to the job's
//! environment. An environment that fails (down, unreachable, not migrated, too slow) is logged
//! and taken off the claim path; from its retry time on (capped exponential backoff,
//! QUEUE_ENV_RETRY_MAX_MS) a background probe tries it again and puts it back once it answers, so
//! one environment being down never stalls the others. Only a connection-level failure
//! ([`QueueError::is_environment_failure`]) takes an environment off the claim path: a row-level
//! error fails that call only, and a busy local pool ([`QueueError::Busy`]) is just busy. Every call
//! is bounded by QUEUE_CALL_TIMEOUT_MS (plus as much again to wait for a free pool connection).
//! Every claim carries a fresh claim token chosen here: when its answer is lost (timeout, broken
//! connection), the claim is undone in the background by `queue_release_claim(token)`, so the row
//! goes back to waiting without an attempt instead of waiting for the reaper. Claim rounds also
//! reap expired leases, at most once per QUEUE_HEARTBEAT_MS per environment.
//! Idle workers wait for a LISTEN/NOTIFY announcement of a claimable row (see [`crate::notify`]:
//! one listening connection per Postgres environment, one worker woken per row) or for the next
//! poll, whichever comes first.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use registre_config::{Backend, EnvName, Environment, QueueConfig};
use registre_runtime::Backoff;
use tokio_util::sync::{CancellationToken, DropGuard};
use uuid::Uuid;

use crate::notify::{Interest, Wakers};
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
    async fn complete_ocr_with_index(
        &self,
        job: &Job,
        file_content: &str,
        boosted_file_content: &str,
        index_data: Option<&serde_json::Value>,
    ) -> Result<Transition, QueueError> {
        delegate!(self, q => q.complete_ocr_with_index(job, file_content, boosted_file_content, index_data).await)
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

    /// Runs one call with the call timeout (doubled: the backend may first wait up to one call
    /// timeout for a free pool connection); connection-level failures mark the environment down,
    /// successes up. A row-level error or a busy pool leaves the environment's state alone.
    async fn guarded<T>(&self, operation: &'static str, call: impl Future<Output = Result<T, QueueError>>) -> Result<T, QueueError> {
        let result = match tokio::time::timeout(self.call_timeout.saturating_mul(2), call).await {
            Ok(result) => result,
            Err(_) => Err(QueueError::Timeout {
                env: self.queue.env(),
                operation,
                timeout_ms: u64::try_from(self.call_timeout.saturating_mul(2).as_millis()).unwrap_or(u64::MAX),
            }),
        };
        match &result {
            Ok(_) => self.mark_up(),
            Err(e) if e.is_environment_failure() => self.mark_down(e),
            Err(e) => {
                let env = self.queue.env();
                tracing::warn!(%env, "⚠️ {e} (the environment stays in use)");
            }
        }
        result
    }

    /// Undoes a claim whose answer was lost, off the caller's path: retried with backoff (the
    /// environment may be what lost it) until it is recorded or the lease it would have had is
    /// over (the reaper then takes the row, counting an attempt; logged).
    fn spawn_release_claim(self: &Arc<Self>, token: Uuid, lease_ttl: Duration) {
        let slot = Arc::clone(self);
        tokio::spawn(async move {
            let env = slot.queue.env();
            let started = Instant::now();
            let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
            loop {
                let call = tokio::time::timeout(slot.call_timeout.saturating_mul(2), slot.queue.release_claim(token)).await;
                match call {
                    Ok(Ok(0)) => {
                        tracing::info!(%env, "↩️ lost claim {token}: nothing was claimed under it, and now nothing can be");
                        return;
                    }
                    Ok(Ok(n)) => {
                        tracing::warn!(%env, "↩️ lost claim {token}: {n} row(s) went back to waiting (no attempt counted)");
                        return;
                    }
                    Ok(Err(e)) => tracing::warn!(%env, "releasing lost claim {token} failed ({e}): retrying"),
                    Err(_) => tracing::warn!(%env, "releasing lost claim {token} did not answer: retrying"),
                }
                let delay = backoff.next_delay();
                if started.elapsed() + delay > lease_ttl {
                    tracing::error!(%env, "❌ lost claim {token} could not be released within the lease: the reaper returns the row (an attempt is counted)");
                    return;
                }
                tokio::time::sleep(delay).await;
            }
        });
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

impl Claim {
    fn interest(self) -> Interest {
        match self {
            Claim::Extraction => Interest::Extraction,
            Claim::Ocr(source) => Interest::Ocr(source),
        }
    }
}

pub struct MultiQueue {
    slots: Vec<Arc<Slot>>,
    config: QueueConfig,
    /// Idle workers of this process, woken by the LISTEN connections.
    wakers: Arc<Wakers>,
    /// Whether idle workers are woken by LISTEN/NOTIFY (else they only poll).
    notify: bool,
    /// The LISTEN connections are started by the first wait (they need the runtime).
    listening: AtomicBool,
    /// Stops the LISTEN connections when the MultiQueue is dropped.
    stop_listeners: CancellationToken,
    _listeners_guard: DropGuard,
    /// Claim calls made (each one database round trip), for the benchmarks and metrics.
    claim_calls: AtomicU64,
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
        let stop_listeners = CancellationToken::new();
        MultiQueue {
            slots,
            config,
            wakers: Arc::new(Wakers::default()),
            notify: true,
            listening: AtomicBool::new(false),
            _listeners_guard: stop_listeners.clone().drop_guard(),
            stop_listeners,
            claim_calls: AtomicU64::new(0),
        }
    }

    /// With `false`, idle workers only poll every QUEUE_POLL_INTERVAL_MS (no LISTEN connection):
    /// the benchmark's comparison, or a connection path without LISTEN (a transaction pooler).
    pub fn with_notify(mut self, notify: bool) -> MultiQueue {
        self.notify = notify;
        self
    }

    /// Claim calls made so far (each one database round trip, whatever it found).
    pub fn claim_calls(&self) -> u64 {
        self.claim_calls.load(Ordering::Relaxed)
    }

    /// Row announcements received so far by this process's LISTEN connections.
    pub fn notifications_received(&self) -> u64 {
        self.wakers.received()
    }

    /// Starts one LISTEN connection per Postgres environment, once.
    fn start_listeners(&self) {
        if !self.notify || self.listening.swap(true, Ordering::SeqCst) {
            return;
        }
        for slot in &self.slots {
            if let EnvQueue::Postgres(q) = &slot.queue {
                crate::notify::spawn_listener(
                    q.env(),
                    q.pool(),
                    self.wakers.clone(),
                    self.config.env_retry_max,
                    self.stop_listeners.child_token(),
                );
            }
        }
    }

    /// One lazy backend per environment (nothing is contacted until the first claim).
    /// `max_connections` bounds each environment's Postgres pool (normally `config.pg_pool_size`).
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
            // A fresh token per claim, chosen here, so a claim whose answer is lost can be undone.
            let token = Uuid::new_v4();
            self.claim_calls.fetch_add(1, Ordering::Relaxed);
            let claimed = match kind {
                Claim::Extraction => slot.guarded("claim for extraction", slot.queue.claim_extraction(worker_id, token)).await,
                Claim::Ocr(source) => slot.guarded("claim for OCR", slot.queue.claim_ocr(worker_id, source, token)).await,
            };
            match claimed {
                Ok(Some(job)) => return Some(job),
                Ok(None) => {}
                // Nothing reached the database (no connection, no such function): nothing to undo.
                Err(QueueError::Busy { .. } | QueueError::NotMigrated { .. } | QueueError::Setup { .. }) => {}
                // The claim may have committed without us hearing of it: undo it.
                Err(_) => slot.spawn_release_claim(token, self.config.lease_ttl),
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

    /// Claims, and while nothing is claimable waits for an announcement of a row of this kind
    /// (one waiter woken per row) or the next poll, whichever comes first. The wake-up is armed
    /// BEFORE the claim, so a row announced between an empty claim and the wait is not missed.
    async fn wait_for(&self, worker_id: &str, kind: Claim, stop: &CancellationToken) -> Option<Job> {
        self.start_listeners();
        let wake = self.wakers.for_interest(kind.interest());
        loop {
            if stop.is_cancelled() {
                return None;
            }
            let notified = wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(job) = self.claim(worker_id, kind).await {
                // Dropping a wake-up meant for someone else passes it on to the next waiter.
                return Some(job);
            }
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = &mut notified, if self.notify => {}
                _ = tokio::time::sleep(self.config.poll_interval) => {}
            }
        }
    }

    pub async fn renew(&self, job: &Job) -> Result<Transition, QueueError> {
        let slot = self.slot(job.env)?;
        slot.guarded("renew lease", slot.queue.renew(job)).await
    }

    pub async fn complete_extraction(&self, job: &Job, supabase_path: &str, fetched_as: Option<&str>) -> Result<Transition, QueueError> {
        let slot = self.slot(job.env)?;
        slot.guarded("complete extraction", slot.queue.complete_extraction(job, supabase_path, fetched_as)).await
    }

    pub async fn complete_ocr(&self, job: &Job, file_content: &str, boosted_file_content: &str) -> Result<Transition, QueueError> {
        let slot = self.slot(job.env)?;
        slot.guarded("complete OCR", slot.queue.complete_ocr(job, file_content, boosted_file_content)).await
    }

    /// [`MultiQueue::complete_ocr`] writing `index_data` in the same transition.
    pub async fn complete_ocr_with_index(
        &self,
        job: &Job,
        file_content: &str,
        boosted_file_content: &str,
        index_data: Option<&serde_json::Value>,
    ) -> Result<Transition, QueueError> {
        let slot = self.slot(job.env)?;
        slot.guarded("complete OCR", slot.queue.complete_ocr_with_index(job, file_content, boosted_file_content, index_data)).await
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

    /// The browser crashed on the job's document (see [`Queue::release_after_crash`]).
    pub async fn release_after_crash(&self, job: &Job, error: &str, max_crashes: i32) -> Result<CrashOutcome, QueueError> {
        let slot = self.slot(job.env)?;
        slot.guarded("release after a browser crash", slot.queue.release_after_crash(job, error, max_crashes)).await
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
