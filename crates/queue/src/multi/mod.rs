//! Every configured environment's queue behind one poller: claim rounds go prod → staging → dev
//! and return the first row found, tagged with its environment; transitions go back to the job's
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
//!
//! This file: the [`MultiQueue`] itself, its construction and the transitions routed to the job's
//! environment. [`dispatch`]: [`EnvQueue`], one environment's backend; [`slots`]: each
//! environment's health, guarded calls, probes and lost-claim release; [`poller`]: claim rounds,
//! the idle wait and the LISTEN connections.

mod dispatch;
mod poller;
mod slots;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use registre_config::{EnvName, Environment, QueueConfig};
use tokio_util::sync::{CancellationToken, DropGuard};

pub use dispatch::EnvQueue;
use slots::Slot;

use crate::heartbeat::Keeper;
use crate::notify::Wakers;
use crate::*;

pub struct MultiQueue {
    slots: Vec<Arc<Slot>>,
    config: QueueConfig,
    /// Idle workers of this process, woken by the LISTEN connections.
    wakers: Arc<Wakers>,
    /// Whether idle workers are woken by LISTEN/NOTIFY (else they only poll).
    notify: bool,
    /// The LISTEN connections are started by the first wait (they need the runtime).
    listening: AtomicBool,
    /// Stops the LISTEN connections and the heartbeats' keeper task when the MultiQueue is dropped.
    stop_listeners: CancellationToken,
    _listeners_guard: DropGuard,
    /// Claim calls made (each one database round trip), for the benchmarks and metrics.
    claim_calls: AtomicU64,
    /// Renews the leases of [`MultiQueue::keep_alive`]'s heartbeats.
    keeper: Arc<Keeper>,
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
        let slots = queues.into_iter().map(|queue| Arc::new(Slot::new(queue, &config))).collect();
        let stop_listeners = CancellationToken::new();
        let keeper = Keeper::new(config.heartbeat);
        MultiQueue {
            slots,
            config,
            wakers: Arc::new(Wakers::default()),
            notify: true,
            listening: AtomicBool::new(false),
            _listeners_guard: stop_listeners.clone().drop_guard(),
            stop_listeners,
            claim_calls: AtomicU64::new(0),
            keeper,
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

    /// The slot of the environment a job came from.
    fn slot(&self, env: EnvName) -> Result<&Arc<Slot>, QueueError> {
        self.slots.iter().find(|s| s.queue.env() == env).ok_or(QueueError::UnknownEnvironment { env })
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
        self.complete_ocr_with(job, OcrTexts::new(file_content, boosted_file_content)).await
    }

    /// [`MultiQueue::complete_ocr`] with all the job hands back (see [`Queue::complete_ocr_with`]).
    pub async fn complete_ocr_with(&self, job: &Job, texts: OcrTexts<'_>) -> Result<Transition, QueueError> {
        let slot = self.slot(job.env)?;
        slot.guarded("complete OCR", slot.queue.complete_ocr_with(job, texts)).await
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

    /// Renews `job`'s lease every QUEUE_HEARTBEAT_MS until the returned heartbeat is dropped.
    /// One task per queue renews every kept lease (see [`crate::heartbeat`]).
    pub fn keep_alive(self: &Arc<Self>, job: &Job) -> Heartbeat {
        self.keeper.keep(job, &self.stop_listeners, || {
            // Weak: the keeper's task must not keep the queue alive (its end is the queue's drop).
            let queue = Arc::downgrade(self);
            move |job: Job| {
                let queue = queue.upgrade()?;
                Some(async move { queue.renew(&job).await })
            }
        })
    }
}
