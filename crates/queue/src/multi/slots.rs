//! Slot health and lost-claim release: one [`Slot`] per environment holds its queue and whether it
//! is up. Every call goes through [`Slot::guarded`] (bounded by the call timeout; a
//! connection-level failure takes the environment off the claim path, a success puts it back); a
//! down environment is tried again by a background probe from its retry time on (capped
//! exponential backoff, QUEUE_ENV_RETRY_MAX_MS); a claim whose answer was lost is undone in the
//! background with `queue_release_claim(token)`.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use registre_config::QueueConfig;
use registre_runtime::Backoff;
use uuid::Uuid;

use super::EnvQueue;
use crate::{Queue, QueueError};

struct Health {
    backoff: Backoff,
    /// Set while the environment is down: a background probe tries it again from then on.
    retry_at: Option<Instant>,
    probing: bool,
    last_reap: Option<Instant>,
}

pub(super) struct Slot {
    pub(super) queue: EnvQueue,
    health: Mutex<Health>,
    call_timeout: Duration,
}

impl Slot {
    /// Up, with the retry backoff and the call timeout of `config`.
    pub(super) fn new(queue: EnvQueue, config: &QueueConfig) -> Slot {
        let min = Duration::from_secs(1).min(config.env_retry_max);
        Slot {
            queue,
            health: Mutex::new(Health {
                backoff: Backoff::new(min, config.env_retry_max),
                retry_at: None,
                probing: false,
                last_reap: None,
            }),
            call_timeout: config.call_timeout,
        }
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        // A panic while holding this lock cannot leave Health inconsistent: keep using it.
        self.health.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Up: claims may use it. A down environment is never called on the claim path.
    pub(super) fn ready(&self) -> bool {
        self.health().retry_at.is_none()
    }

    /// Whether a round over the environments may call this one now: up, or else skipped, with a
    /// background probe started once its retry time has come (one probe at a time).
    pub(super) fn usable(self: &Arc<Self>) -> bool {
        if self.ready() {
            return true;
        }
        if self.take_probe() {
            self.spawn_probe();
        }
        false
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

    pub(super) fn reap_due(&self, every: Duration) -> bool {
        let mut h = self.health();
        let due = h.last_reap.is_none_or(|at| at.elapsed() >= every);
        if due {
            h.last_reap = Some(Instant::now());
        }
        due
    }

    /// Returns the environment's expired leases to waiting (logged when there were any); whether
    /// the call succeeded.
    pub(super) async fn reap(&self) -> bool {
        match self.guarded("reap expired leases", self.queue.reap_expired()).await {
            Ok(n) => {
                if n > 0 {
                    let env = self.queue.env();
                    tracing::warn!(%env, "♻️ {n} row(s) of {env} whose lease expired went back to waiting");
                }
                true
            }
            Err(_) => false,
        }
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
    pub(super) async fn guarded<T>(&self, operation: &'static str, call: impl Future<Output = Result<T, QueueError>>) -> Result<T, QueueError> {
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
    pub(super) fn spawn_release_claim(self: &Arc<Self>, token: Uuid, lease_ttl: Duration) {
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
            if slot.reap().await {
                slot.health().last_reap = Some(Instant::now());
            }
        });
    }
}
