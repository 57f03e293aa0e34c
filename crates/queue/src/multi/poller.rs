//! The poller: claim rounds over the environments (prod → staging → dev, the first row found wins,
//! expired leases reaped at most once per QUEUE_HEARTBEAT_MS per environment, a fresh claim token
//! per claim so a lost answer can be undone), and the idle wait between rounds: a LISTEN/NOTIFY
//! announcement of a claimable row (see [`crate::notify`]: one listening connection per Postgres
//! environment, on the channels of the stages this process waits for; one worker woken per row)
//! or the next poll, whichever comes first.

use std::sync::atomic::Ordering;

use tokio_util::sync::CancellationToken;

use super::{EnvQueue, MultiQueue};
use crate::notify::Interest;
use crate::{DocumentSource, Job, Queue, QueueError, WaitingCounts};

/// What a round claims.
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

impl MultiQueue {
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

    /// One round: each usable environment in order is asked for a row, the first one found is
    /// returned. Failures are logged and skip that environment (see [`super::slots`]).
    async fn claim_round(&self, worker_id: &str, kind: Claim) -> Option<Job> {
        for slot in &self.slots {
            if !slot.usable() {
                continue;
            }
            if slot.reap_due(self.config.heartbeat) && !slot.reap().await {
                continue;
            }
            // A fresh token per claim, chosen here, so a claim whose answer is lost can be undone.
            // Random bits from the thread's generator (seeded from the OS, cryptographically
            // strong) rather than Uuid::new_v4's getrandom system call per claim.
            let token = uuid::Builder::from_random_bytes(rand::random::<u128>().to_le_bytes()).into_uuid();
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

    /// One round over the environments, without waiting: the first status-1 row found in any of
    /// them (prod first), tagged with its environment, or None. Unlike [`Queue::claim_extraction`]
    /// the caller names no environment and no claim token, and gets no error: an environment that
    /// fails is logged and skipped.
    pub async fn claim_any_extraction(&self, worker_id: &str) -> Option<Job> {
        self.claim_round(worker_id, Claim::Extraction).await
    }

    /// Like [`MultiQueue::claim_any_extraction`] for status-3 rows of `source`.
    pub async fn claim_any_ocr(&self, worker_id: &str, source: DocumentSource) -> Option<Job> {
        self.claim_round(worker_id, Claim::Ocr(source)).await
    }

    /// Claim rounds every QUEUE_POLL_INTERVAL_MS (or on a row's announcement) until a row comes,
    /// or None once `stop` fires.
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
        // Before the first claim: see [`crate::notify::Wakers::want`].
        self.wakers.want(kind.interest());
        self.start_listeners();
        let wake = self.wakers.for_interest(kind.interest());
        loop {
            if stop.is_cancelled() {
                return None;
            }
            let notified = wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(job) = self.claim_round(worker_id, kind).await {
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

    /// Status-3 rows per source, summed over the reachable environments (one grouped query each;
    /// an environment that is down counts as none and is logged).
    pub async fn count_waiting(&self) -> WaitingCounts {
        let mut total = WaitingCounts::new();
        for slot in &self.slots {
            if !slot.usable() {
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
}
